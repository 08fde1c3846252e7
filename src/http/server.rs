//! The accept loop: HTTP/1.1 connections served by hyper, with the limits that keep
//! one client from holding the service.
//!
//! warp's own server has no timeouts and no connection limit, so the routes run here
//! as a plain service: a connection must send its request headers within
//! [`Limits::header_read`] (which also closes idle keep-alive connections), the
//! service holds at most [`Limits::connections`] connections and at most
//! [`Limits::connections_per_client`] from one address; a connection over either
//! limit is answered 503 `too_many_connections` and closed at once. Bodies have their
//! own deadline (`BODY_READ_TIMEOUT`, in the routes).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service as _;
use warp::Filter;
use warp::http::StatusCode;
use warp::http::header::ALLOW;
use warp::reply::Response;

use crate::store::writer::Senders;

/// Open connections the service holds at once, by default.
pub const CONNECTIONS_MAX: usize = 4096;
/// Open connections one address may hold at once, by default.
pub const CONNECTIONS_PER_CLIENT_MAX: usize = 256;
/// Time a connection has to send a request's headers, and to stay idle between two.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub connections_per_client: usize,
    pub header_read: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: CONNECTIONS_MAX,
            connections_per_client: CONNECTIONS_PER_CLIENT_MAX,
            header_read: HEADER_READ_TIMEOUT,
        }
    }
}

/// The address a request came from, put in its extensions for the routes.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Serves `filter` on `listener` until `stop` resolves, then lets the requests in
/// flight finish (new ones are refused) and returns.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    senders: Senders,
    stop: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let service = warp::service(filter);
    let graceful = GracefulShutdown::new();
    let counts = Arc::new(Counts::default());
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // A reply is one write; it goes out at once rather than wait on Nagle's timer.
        let _ = stream.set_nodelay(true);
        let Ok(slot) = counts.enter(client.ip(), limits.connections, limits.connections_per_client) else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let sender = senders.arrive();
        let service = service.clone();
        let serve = move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ClientAddr(client));
            let uri = request.uri().clone();
            let reply = service.clone().call(request);
            async move {
                let mut response = reply.await?;
                // warp's rejection knows the method was wrong, not which ones are right.
                if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allow) = super::allowed_methods(uri.path()).and_then(|allow| allow.parse().ok()) {
                        response.headers_mut().insert(ALLOW, allow);
                    }
                }
                Ok::<_, Infallible>(response)
            }
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read)
            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(serve));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a connection ended in error");
            }
            drop(slot);
            drop(sender);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The reply to a connection over the limits: written without reading the request.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":{"code":"too_many_connections","message":"the service holds too many connections; try again in a moment"}}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// What is open (connections, or live streams), in all and per address.
#[derive(Debug, Default)]
pub struct Counts {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Which limit a refused entry met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    All,
    Client,
}

impl Counts {
    /// Takes a place for `client`, if there are fewer than `all_max` open in all and
    /// fewer than `per_client_max` from its address.
    pub fn enter(self: &Arc<Self>, client: IpAddr, all_max: usize, per_client_max: usize) -> Result<Slot, Full> {
        let mut open = self.open.lock().expect("the counts' lock");
        let (all, per_client) = &mut *open;
        let mine = per_client.get(&client).copied().unwrap_or(0);
        if *all >= all_max {
            return Err(Full::All);
        }
        if mine >= per_client_max {
            return Err(Full::Client);
        }
        *all += 1;
        per_client.insert(client, mine + 1);
        Ok(Slot { counts: self.clone(), client })
    }
}

/// One place in the counts, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Counts>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("the counts' lock");
        let (all, per_client) = &mut *open;
        *all -= 1;
        if let Some(mine) = per_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_in_all_and_per_address_and_given_back() {
        let counts = Arc::new(Counts::default());
        let enter = |client: IpAddr| counts.enter(client, 3, 2);
        let (one, two, three): (IpAddr, IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = enter(one).unwrap();
        let _second = enter(one).unwrap();
        assert_eq!(enter(one).unwrap_err(), Full::Client, "a third from one address");
        let _third = enter(two).unwrap();
        assert_eq!(enter(three).unwrap_err(), Full::All, "a fourth in all");
        drop(first);
        assert!(enter(three).is_ok(), "a closed connection gives its place back");
        assert_eq!(counts.open.lock().unwrap().1.get(&one), Some(&1));
    }
}
