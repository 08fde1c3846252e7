//! The README's walk-through, run with the real binary: `covoit serve` on a free port,
//! `covoit keygen` and the signing client, then a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_covoit");

struct Server {
    child: Child,
    base: String,
    /// The lines of its log but the one that says where it listens.
    log: std::sync::mpsc::Receiver<String>,
}

impl Server {
    /// Starts `covoit serve` in `folder` on a free port, with the demo operator key.
    fn start(folder: &Path) -> Server {
        Server::start_with(folder, &[], "warn")
    }

    /// The same with more flags, logging at `level`.
    fn start_with(folder: &Path, flags: &[&str], level: &str) -> Server {
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .current_dir(folder)
            .env("RUST_LOG", level)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("covoit serve starts");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        // Every line goes to `log`, those before the address too: the threads that
        // start before the listener may log before it.
        let (sender, log) = std::sync::mpsc::channel();
        let base = loop {
            let line = lines.next().expect("covoit serve says where it listens").unwrap();
            if let Some(address) = line.strip_prefix("covoit is listening on ") {
                break address.to_owned();
            }
            let _ = sender.send(line);
        };
        // Keep draining stderr so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Server { child, base, log }
    }

    /// The first line of the log that contains `text`, waiting up to ten seconds.
    fn log_line(&self, text: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The scheduling policy of its thread named `name` (0 normal, 1 `SCHED_FIFO`),
    /// from field 41 of `/proc/<pid>/task/<tid>/stat`. A new thread names itself once
    /// it runs, which on a busy machine may come after the server listens: it is
    /// looked for during up to ten seconds.
    fn thread_policy(&self, name: &str) -> u32 {
        let tasks = Path::new("/proc").join(self.child.id().to_string()).join("task");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            for task in std::fs::read_dir(&tasks).unwrap() {
                let task = task.unwrap().path();
                // A thread may end while we look (an idle blocking thread, say): skip it.
                let (Ok(comm), Ok(stat)) =
                    (std::fs::read_to_string(task.join("comm")), std::fs::read_to_string(task.join("stat")))
                else {
                    continue;
                };
                if comm.trim() == name {
                    // The fields after the name in parentheses start at field 3.
                    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
                    return fields[41 - 3].parse().unwrap();
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("no thread named {name}");
    }

    fn terminate(self) -> std::process::ExitStatus {
        self.terminate_with_log().0
    }

    /// Stops it with SIGTERM: its exit status, and its log since it listened.
    fn terminate_with_log(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        let log: Vec<String> = self.log.iter().collect();
        (status, log.join("\n"))
    }
}

/// A test that fails before `terminate` leaves no server running behind it.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn covoit(folder: &Path, server: &Server, args: &[&str]) -> Output {
    let output =
        Command::new(BINARY).args(args).current_dir(folder).env("COVOIT_SERVER", &server.base).output().unwrap();
    assert!(output.status.success(), "covoit {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap().trim().to_owned()
}

fn get(server: &Server, path: &str) -> serde_json::Value {
    let mut response = ureq::get(&format!("{}{path}", server.base)).call().unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn the_readme_walk_through_works_and_sigterm_stops_cleanly() {
    let folder = tempfile::tempdir().unwrap();
    let folder = folder.path();
    let server = Server::start(folder);
    let operator_key = "keys/operator-demo.key";
    assert!(folder.join(operator_key).exists(), "a demo operator key was made");

    let alice_public = stdout(&covoit(folder, &server, &["keygen", "--out", "alice.key"]));
    assert_eq!(covoit::core::protocol::base64_decode(&alice_public).unwrap().len(), 32);
    covoit(folder, &server, &["keygen", "--out", "bob.key"]);
    let alice = stdout(&covoit(folder, &server, &["register", "--key", "alice.key", "--name", "Alice Martin"]));
    let bob = stdout(&covoit(folder, &server, &["register", "--key", "bob.key", "--name", "Bob Dupont"]));
    assert_eq!(get(&server, &format!("/v1/accounts/{alice}"))["status"], "pending");
    covoit(folder, &server, &["approve", "--key", operator_key, &alice]);
    covoit(folder, &server, &["approve", "--key", operator_key, &bob]);
    covoit(folder, &server, &["issue", "--key", operator_key, "--to", &alice, "--amount", "20.00"]);
    let receipt = covoit(
        folder,
        &server,
        &[
            "transfer",
            "--key",
            "alice.key",
            "--account",
            &alice,
            "--to",
            &bob,
            "--amount",
            "3.50",
            "--memo",
            "baguettes",
        ],
    );
    let receipt: serde_json::Value = serde_json::from_slice(&receipt.stdout).unwrap();
    assert_eq!(receipt["postings"][1]["amount"], "3.50");
    covoit(folder, &server, &["credit-set", "--key", operator_key, &bob, "--floor", "-10.00"]);
    covoit(folder, &server, &["redeem", "--key", "bob.key", "--account", &bob, "--amount", "1.50"]);
    assert_eq!(get(&server, &format!("/v1/accounts/{alice}"))["balance"], "16.50");
    assert_eq!(get(&server, &format!("/v1/accounts/{bob}"))["balance"], "2.00");
    assert_eq!(get(&server, &format!("/v1/accounts/{bob}"))["floor"], "-10.00");
    assert_eq!(get(&server, "/v1/accounts/reserve")["balance"], "-18.50");

    // Any command, such as a ride offer, with `covoit send`.
    let offer = r#"{"type":"ride.offer","offer":"00000000-0000-4000-9000-000000000001","origin":{"lat":"45.248","lon":"1.327"},"destination":{"lat":"45.264","lon":"1.409"},"seats":3,"weekdays":"mon,tue,wed,thu,fri","time":"07:30"}"#;
    covoit(folder, &server, &["send", "--key", "alice.key", "--account", &alice, "--body", offer]);
    assert_eq!(get(&server, "/v1/offers/00000000-0000-4000-9000-000000000001")["schedule"]["time"], "07:30");
    let place = r#"{"type":"place.set","point":"mairie","name":"Mairie","lat":"45.2478","lon":"1.3272"}"#;
    covoit(folder, &server, &["send", "--key", operator_key, "--body", place]);
    assert_eq!(get(&server, "/v1/meeting-points")[0]["name"], "Mairie");

    // A refusal exits non-zero and prints the service's error.
    let refused = Command::new(BINARY)
        .args(["transfer", "--key", "alice.key", "--account", &alice, "--to", &bob, "--amount", "99.00"])
        .current_dir(folder)
        .env("COVOIT_SERVER", &server.base)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("insufficient_funds"));

    // SIGTERM: a clean exit, the database closed (its WAL folded back in).
    let status = server.terminate();
    assert!(status.success(), "covoit serve exited with {status}");
    assert!(folder.join("covoit.db").exists());
    assert!(!folder.join("covoit.db-wal").exists(), "the database was closed cleanly");
    // Keys are private to their owner.
    use std::os::unix::fs::PermissionsExt;
    for key in ["keys/ledger.key", operator_key, "alice.key"] {
        let mode = std::fs::metadata(folder.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // And the same files serve again, unchanged; a key file others could read is
    // still used, with a warning that says how to mend it.
    let ledger_key = folder.join("keys/ledger.key");
    std::fs::set_permissions(&ledger_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(folder);
    let warning = server.log_line("can be read by other users").expect("a warning about the key file");
    assert!(warning.contains("ledger.key") && warning.contains("chmod 600"), "{warning}");
    assert_eq!(get(&server, &format!("/v1/accounts/{alice}"))["balance"], "16.50");
    assert!(server.terminate().success());
}

/// A SIGTERM while the service is still starting (its database made, not listening
/// yet) stops it cleanly too, instead of killing it halfway.
#[test]
fn sigterm_while_starting_stops_cleanly() {
    let folder = tempfile::tempdir().unwrap();
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(folder.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("covoit serve starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !folder.path().join("covoit.db").exists() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("covoit serve made no database in 30 s");
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "covoit serve exited with {status}");
    assert!(!folder.path().join("covoit.db-wal").exists(), "the database was closed cleanly");
}

#[test]
fn the_load_generator_lands_every_payment_it_counts() {
    let temp = tempfile::tempdir().unwrap();
    let folder = temp.path();
    let server = Server::start(folder);
    let size_before = get(&server, "/healthz")["size"].as_u64().unwrap();
    // Exits non-zero on any refusal or broken connection.
    let args = "load --operator-key keys/operator-demo.key --accounts 8 --clients 1,8 --seconds 0.5";
    let output = covoit(folder, &server, &args.split(' ').collect::<Vec<_>>());
    let report = stdout(&output);
    let mut payments = 0;
    for (line, clients) in report.lines().zip(["1", "8"]) {
        let words = line.split_whitespace().collect::<Vec<_>>();
        assert_eq!(words[..2], ["clients", clients], "{report}");
        assert_eq!(words[2], "payments", "{report}");
        let count: u64 = words[3].parse().unwrap();
        assert!(count > 0, "no payment went through: {report}");
        payments += count;
    }
    // Each account: registered, approved and funded by the desk; then the payments.
    let size = get(&server, "/healthz")["size"].as_u64().unwrap();
    assert_eq!(size, size_before + 8 * 3 + payments, "{report}");
    assert!(server.terminate().success());
}

#[test]
fn the_writer_asks_for_real_time_priority_and_serves_without_it() {
    const NORMAL: u32 = 0;
    const FIFO: u32 = 1;
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start_with(temp.path(), &[], "info");
    let line = server.log_line("the writer runs at").expect("the writer says how it is scheduled");
    let policy = server.thread_policy("covoit-writer");
    if line.contains("real-time priority (SCHED_FIFO)") {
        assert_eq!(policy, FIFO, "{line}");
    } else {
        assert!(line.contains("normal priority") && line.contains("error="), "{line}");
        assert_eq!(policy, NORMAL, "{line}");
        // Root may always ask for it: the fallback is only for those who may not.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let effective_uid =
            status.lines().find_map(|line| line.strip_prefix("Uid:")).unwrap().split_whitespace().nth(1);
        assert_ne!(effective_uid, Some("0"), "root was refused real-time priority: {line}");
    }
    assert_eq!(server.thread_policy("tokio-rt-worker"), NORMAL, "only the writer asks");
    // It takes commands either way.
    let registers = |server: &Server, key: &str| {
        covoit(temp.path(), server, &["keygen", "--out", key]);
        let size_before = get(server, "/healthz")["size"].as_u64().unwrap();
        covoit(temp.path(), server, &["register", "--key", key, "--name", "Alice Martin"]);
        assert_eq!(get(server, "/healthz")["size"].as_u64().unwrap(), size_before + 1);
    };
    registers(&server, "alice.key");
    assert!(server.terminate().success());

    let server = Server::start_with(temp.path(), &["--writer-priority", "normal"], "info");
    assert_eq!(server.thread_policy("covoit-writer"), NORMAL);
    registers(&server, "bernard.key");
    let (status, log) = server.terminate_with_log();
    assert!(status.success());
    assert!(!log.contains("the writer runs at"), "nothing to say at normal priority: {log}");
}
