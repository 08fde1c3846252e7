//! Clients that hold connections: slow headers, slow bodies, thousands of idle
//! connections. None of them may keep the service from answering everyone else.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use covoit::http::server::Limits;
use covoit::store::writer::Pacing;

use crate::support::{Member, TestApp};

/// A connection from a chosen loopback address (127.0.0.x), so that "another client"
/// is another address, as it is for the limits.
fn connect_from(app: &TestApp, source: Ipv4Addr) -> TcpStream {
    let target: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source.into(), 0).into()).unwrap();
    socket.connect(&target.into()).unwrap();
    socket.into()
}

/// Reads until the server closes the connection or `within` passes; returns what came
/// and whether the server closed it.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < within {
        match stream.read(&mut chunk) {
            Ok(0) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), false)
}

fn healthy_from(app: &TestApp, source: Ipv4Addr) -> bool {
    let mut stream = connect_from(app, source);
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: covoit\r\nconnection: close\r\n\r\n").unwrap();
    let (reply, _) = read_until_closed(&mut stream, Duration::from_secs(10));
    reply.starts_with("HTTP/1.1 200")
}

fn short_header_timeout(limits: &mut Limits) {
    limits.header_read = Duration::from_secs(1);
}

#[test]
fn headers_sent_a_byte_at_a_time_are_cut_off_and_others_are_served_meanwhile() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), |config| short_header_timeout(&mut config.connections));
    let mut slow = connect_from(&app, Ipv4Addr::new(127, 0, 0, 1));
    let started = Instant::now();
    let request = b"POST /v1/commands HTTP/1.1\r\nhost: covoit\r\ncontent-type: application/json\r\n";
    let mut closed = false;
    for byte in request.iter().cycle().take(200) {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        assert!(healthy_from(&app, Ipv4Addr::new(127, 0, 0, 2)) || started.elapsed() < Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    if !closed {
        let (_, by_server) = read_until_closed(&mut slow, Duration::from_secs(3));
        closed = by_server;
    }
    assert!(closed, "the server closed a connection whose headers never ended");
    assert!(started.elapsed() < Duration::from_secs(8), "within the header timeout, give or take");
    assert!(healthy_from(&app, Ipv4Addr::new(127, 0, 0, 1)));
}

#[test]
fn a_body_sent_a_byte_at_a_time_gets_408_and_changes_nothing() {
    let app = TestApp::spawn();
    let size = app.size();
    let mut slow = connect_from(&app, Ipv4Addr::new(127, 0, 0, 1));
    slow.write_all(
        b"POST /v1/commands HTTP/1.1\r\nhost: covoit\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n",
    )
    .unwrap();
    let started = Instant::now();
    slow.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(20) {
        if slow.write_all(b" ").is_err() {
            break;
        }
        match slow.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => {
                reply.extend_from_slice(&chunk[..read]);
                if reply.windows(4).any(|window| window == b"}}\r\n") || reply.ends_with(b"}}") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"body_timeout\""), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(app.size(), size, "nothing was logged");
}

/// How long the service lets a connection idle in the next test.
const IDLE_CUT: Duration = Duration::from_secs(20);

#[test]
fn thousands_of_idle_connections_do_not_shut_others_out() {
    // The test holds both ends of every connection.
    raise_open_files_limit(16_384);
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), |config| {
        config.connections = Limits { connections: 3000, connections_per_client: 100, header_read: IDLE_CUT };
    });
    // 3,000 idle connections from 30 addresses, 100 each: the service's every place.
    let opening = Instant::now();
    let mut idle = Vec::new();
    for host in 10..40u8 {
        for _ in 0..100 {
            idle.push(connect_from(&app, Ipv4Addr::new(127, 0, 1, host)));
        }
    }
    assert!(
        opening.elapsed() < IDLE_CUT - Duration::from_secs(5),
        "opening the connections took {:?}",
        opening.elapsed()
    );
    // The service is full: a newcomer is told so at once, with a clear error.
    let mut newcomer = connect_from(&app, Ipv4Addr::new(127, 0, 0, 2));
    let (reply, closed) = read_until_closed(&mut newcomer, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("\"too_many_connections\""), "{reply}");
    assert!(closed);
    // Idle connections are closed by the header timeout; then everyone is served again.
    let started = Instant::now();
    while !healthy_from(&app, Ipv4Addr::new(127, 0, 0, 2)) {
        assert!(started.elapsed() < 3 * IDLE_CUT, "the idle connections were never closed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, closed) = read_until_closed(&mut idle[0], Duration::from_secs(5));
    assert!(closed, "an idle connection is closed by the server");
    drop(idle);
}

/// One address opens more connections than the service has places: it gets its own
/// share, is told when it asks for more, and everyone else is still served.
#[test]
fn one_address_cannot_take_every_connection() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), |config| {
        config.connections =
            Limits { connections: 100, connections_per_client: 20, header_read: Duration::from_secs(30) };
    });
    let mut greedy = (0..150).map(|_| connect_from(&app, Ipv4Addr::new(127, 0, 0, 1))).collect::<Vec<_>>();
    let (reply, closed) = read_until_closed(greedy.last_mut().unwrap(), Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 503") && reply.contains("\"too_many_connections\""), "{reply}");
    assert!(closed);
    let (_, closed) = read_until_closed(&mut greedy[0], Duration::from_millis(500));
    assert!(!closed, "the address keeps the connections within its share");
    assert!(healthy_from(&app, Ipv4Addr::new(127, 0, 0, 3)), "another address is served");
    drop(greedy);
}

/// Test processes hold both ends of every connection: make room for them.
fn raise_open_files_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Group commit waits for more commands only when many clients are connected
/// (`Pacing`): a lone command then waits, up to the wait; with few connected it is
/// answered at once, and it is again once the others have gone.
#[test]
fn a_batch_waits_for_connected_clients_only_when_many_are_connected() {
    let wait = Duration::from_secs(2);
    let folder = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(folder, |config| config.pacing = Pacing { wait, siblings: 2 });
    let member = Member::new(1);
    app.join(&member, "Ana");
    let timed = |app: &TestApp| {
        let started = Instant::now();
        app.issue(&member, "1.00");
        started.elapsed()
    };
    // One connection (the test's own): no wait.
    assert!(timed(&app) < wait / 2);

    // Three more clients connected, idle after one request each.
    let target: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(target).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: covoit\r\n\r\n").unwrap();
        let mut answer = [0u8; 1024];
        assert!(stream.read(&mut answer).unwrap() > 0, "the service answers the idle client");
        idle.push(stream);
    }
    app.issue(&member, "1.00");
    // The next command comes alone, right after a batch: it waits for the others.
    let waited = timed(&app);
    assert!(waited >= wait / 2, "a lone command among four connected clients waited only {waited:?}");

    // The others leave: no wait any more.
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    app.issue(&member, "1.00");
    assert!(timed(&app) < wait / 2);
    assert_eq!(app.balance(&member.id), "5.00");
}
