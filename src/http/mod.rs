//! The HTTP API: warp filters, handlers and their JSON replies.
//!
//! Handlers read as flat sequences: parse, verify, submit or read, reply. Commands go
//! to the single writer after their envelope is verified here, on any core; reads go
//! to a pool of read-only connections on blocking threads. Every error reply is built
//! by [`error::ApiError`], and [`error::recover`] turns warp's own rejections into it.

pub mod error;
mod replies;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::Semaphore;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};

use crate::clock::Clock;
use crate::core::board::{Board, Notification};
use crate::core::ids::AccountId;
use crate::core::protocol::{self, ENVELOPE_BYTES_MAX};
use crate::http::error::ApiError;
use crate::store::StoreError;
use crate::store::read::{PAGE_LEAVES_MAX, PAGE_POSTINGS_MAX, Reader};
use crate::store::writer::WriterHandle;

/// Largest request body: one envelope.
pub const REQUEST_BYTES_MAX: u64 = ENVELOPE_BYTES_MAX as u64;
/// A request body must arrive within this time once its headers have.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads running at once on blocking threads; more wait their turn.
pub const READS_CONCURRENT_MAX: usize = 16;
/// Postings per page when the client does not say.
pub const PAGE_POSTINGS_DEFAULT: u32 = 50;

/// Every route the service answers, as (method, path) in OpenAPI's notation.
/// A test checks this list against `openapi.json` and against the live server.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/commands"),
    ("GET", "/v1/ledger"),
    ("GET", "/v1/accounts/{id}"),
    ("GET", "/v1/accounts/{id}/postings"),
    ("GET", "/v1/checkpoint"),
    ("GET", "/v1/log"),
    ("GET", "/v1/proof/inclusion"),
    ("GET", "/v1/proof/consistency"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
];

/// The OpenAPI description of every route, compiled in.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Live event streams open at once; more are refused with 503 until one closes.
pub const STREAMS_MAX: usize = 256;

/// What the handlers share.
pub struct App {
    pub writer: WriterHandle,
    pub reader: Arc<Reader>,
    pub reads: Semaphore,
    /// Open offers and requests, for matching and listings; kept by the writer.
    pub board: Arc<std::sync::RwLock<Board>>,
    /// What the writer's commits mean for the live streams.
    pub notifications: tokio::sync::broadcast::Sender<Notification>,
    pub streams: Arc<Semaphore>,
    pub clock: Clock,
}

/// All routes, with the rejection handler.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_app = warp::any().map(move || app.clone());
    let commands = warp::path!("v1" / "commands")
        .and(warp::post())
        .and(with_app.clone())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(post_command);
    let ledger = warp::path!("v1" / "ledger").and(warp::get()).and(with_app.clone()).then(get_ledger);
    let account = warp::path!("v1" / "accounts" / String).and(warp::get()).and(with_app.clone()).then(get_account);
    let postings = warp::path!("v1" / "accounts" / String / "postings")
        .and(warp::get())
        .and(warp::query::<PostingsQuery>())
        .and(with_app.clone())
        .then(get_postings);
    let checkpoint = warp::path!("v1" / "checkpoint").and(warp::get()).and(with_app.clone()).then(get_checkpoint);
    let log =
        warp::path!("v1" / "log").and(warp::get()).and(warp::query::<LogQuery>()).and(with_app.clone()).then(get_log);
    let inclusion = warp::path!("v1" / "proof" / "inclusion")
        .and(warp::get())
        .and(warp::query::<InclusionQuery>())
        .and(with_app.clone())
        .then(get_inclusion);
    let consistency = warp::path!("v1" / "proof" / "consistency")
        .and(warp::get())
        .and(warp::query::<ConsistencyQuery>())
        .and(with_app.clone())
        .then(get_consistency);
    let health = warp::path!("healthz").and(warp::get()).and(with_app).then(get_health);
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .map(|| reply::with_header(OPENAPI_JSON, "content-type", "application/json").into_response());
    commands
        .or(ledger)
        .unify()
        .or(account)
        .unify()
        .or(postings)
        .unify()
        .or(checkpoint)
        .unify()
        .or(log)
        .unify()
        .or(inclusion)
        .unify()
        .or(consistency)
        .unify()
        .or(health)
        .unify()
        .or(openapi)
        .unify()
        .recover(error::recover)
        .unify()
}

async fn post_command(
    app: Arc<App>,
    content_length: Option<u64>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
) -> Response {
    let bytes = match read_body(content_length, body).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    let command = match protocol::open_envelope(&bytes) {
        Ok(command) => command,
        Err(error) => return ApiError::from(error).into_response(),
    };
    match app.writer.submit(command).await {
        Ok(receipt) => reply::json(&replies::receipt(&receipt)).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Reads a request body up to [`REQUEST_BYTES_MAX`] within [`BODY_READ_TIMEOUT`].
async fn read_body(
    content_length: Option<u64>,
    mut body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        let message = format!("the request body is over {REQUEST_BYTES_MAX} bytes; a command envelope is smaller");
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
    };
    if content_length.is_some_and(|length| length > REQUEST_BYTES_MAX) {
        return Err(too_large());
    }
    let collect = async {
        let mut collected = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    format!("the request body broke off: {error}"),
                )
            })?;
            if collected.len() + chunk.remaining() > REQUEST_BYTES_MAX as usize {
                return Err(too_large());
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                collected.extend_from_slice(part);
                let advance = part.len();
                chunk.advance(advance);
            }
        }
        Ok(collected.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, collect).await.unwrap_or_else(|_| {
        let message = format!("the request body did not arrive within {} seconds", BODY_READ_TIMEOUT.as_secs());
        Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message))
    })
}

/// Runs a read on a blocking thread, at most [`READS_CONCURRENT_MAX`] at once.
async fn read<T: Send + 'static>(
    app: &App,
    query: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit =
        app.reads.acquire().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the service is shutting down")
        })?;
    let reader = app.reader.clone();
    match tokio::task::spawn_blocking(move || query(&reader)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ApiError::storage(&error)),
        Err(join_error) => {
            tracing::error!(%join_error, "a read panicked");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the read failed; this is a bug"))
        }
    }
}

async fn get_ledger(app: Arc<App>) -> Response {
    match read(&app, |reader| reader.ledger()).await {
        Ok(ledger) => reply::json(&replies::ledger(&ledger)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn parse_account(text: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(text).map_err(|_| unknown_account(text))
}

fn unknown_account(text: &str) -> ApiError {
    let shown: String = text.chars().take(64).collect();
    ApiError::new(StatusCode::NOT_FOUND, "unknown_account", format!("there is no account \"{shown}\""))
}

async fn get_account(id: String, app: Arc<App>) -> Response {
    let account = match parse_account(&id) {
        Ok(account) => account,
        Err(error) => return error.into_response(),
    };
    match read(&app, move |reader| reader.account(&account)).await {
        Ok(Some(view)) => reply::json(&replies::account(&view)).into_response(),
        Ok(None) => unknown_account(&id).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `?before=<leaf index>&limit=<1..=200>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostingsQuery {
    before: Option<u64>,
    limit: Option<u32>,
}

async fn get_postings(id: String, query: PostingsQuery, app: Arc<App>) -> Response {
    let account = match parse_account(&id) {
        Ok(account) => account,
        Err(error) => return error.into_response(),
    };
    let limit = query.limit.unwrap_or(PAGE_POSTINGS_DEFAULT);
    if !(1..=PAGE_POSTINGS_MAX).contains(&limit) {
        let message = format!("limit must be between 1 and {PAGE_POSTINGS_MAX}");
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).into_response();
    }
    let before = query.before;
    match read(&app, move |reader| reader.postings(&account, before, limit)).await {
        Ok(Some(page)) => reply::json(&replies::postings(&page)).into_response(),
        Ok(None) => unknown_account(&id).into_response(),
        Err(error) => error.into_response(),
    }
}

fn out_of_range(message: String) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, "out_of_range", message).into_response()
}

async fn get_checkpoint(app: Arc<App>) -> Response {
    match read(&app, |reader| reader.checkpoint()).await {
        Ok(note) => reply::with_header(note, "content-type", "text/plain; charset=utf-8").into_response(),
        Err(error) => error.into_response(),
    }
}

/// `?start=<first leaf>&end=<after the last leaf>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    start: Option<u64>,
    end: Option<u64>,
}

/// The exact bytes of leaves `start..end`, one per line (NDJSON). A page holds at most
/// `PAGE_LEAVES_MAX` leaves and stops early at the end of the log.
async fn get_log(query: LogQuery, app: Arc<App>) -> Response {
    let start = query.start.unwrap_or(0);
    let end = query.end.unwrap_or_else(|| start.saturating_add(PAGE_LEAVES_MAX));
    if end < start {
        return out_of_range(format!("end ({end}) is before start ({start})"));
    }
    let page = read(&app, move |reader| {
        let size = reader.size()?;
        if start > size {
            return Ok(Err(size));
        }
        reader.leaves(start, end.min(size)).map(Ok)
    })
    .await;
    match page {
        Ok(Ok(leaves)) => {
            let mut body = Vec::with_capacity(leaves.iter().map(|leaf| leaf.len() + 1).sum());
            for leaf in leaves {
                body.extend_from_slice(&leaf);
                body.push(b'\n');
            }
            reply::with_header(body, "content-type", "application/x-ndjson").into_response()
        }
        Ok(Err(size)) => out_of_range(format!("start ({start}) is past the end of the log ({size} leaves)")),
        Err(error) => error.into_response(),
    }
}

/// `?index=<leaf>&size=<tree size>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

async fn get_inclusion(query: InclusionQuery, app: Arc<App>) -> Response {
    let InclusionQuery { index, size } = query;
    match read(&app, move |reader| reader.inclusion_proof(index, size)).await {
        Ok(Some(hashes)) => reply::json(&replies::inclusion(index, size, &hashes)).into_response(),
        Ok(None) => out_of_range(format!(
            "leaf {index} in a tree of {size}: the index must be below the size, and the size at most the log's"
        )),
        Err(error) => error.into_response(),
    }
}

/// `?from=<older size>&to=<newer size>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn get_consistency(query: ConsistencyQuery, app: Arc<App>) -> Response {
    let ConsistencyQuery { from, to } = query;
    match read(&app, move |reader| reader.consistency_proof(from, to)).await {
        Ok(Some(hashes)) => reply::json(&replies::consistency(from, to, &hashes)).into_response(),
        Ok(None) => {
            out_of_range(format!("from {from} to {to}: the sizes must satisfy 0 < from <= to <= the log's size"))
        }
        Err(error) => error.into_response(),
    }
}

async fn get_health(app: Arc<App>) -> Response {
    if !app.writer.is_running() {
        let message = "the ledger's writer has stopped; commands are not accepted";
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "writer_stopped", message).into_response();
    }
    match read(&app, |reader| reader.ledger()).await {
        Ok(ledger) => reply::json(&replies::health(&ledger)).into_response(),
        Err(error) => error.into_response(),
    }
}
