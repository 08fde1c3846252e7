//! The HTTP API: warp filters, handlers and their JSON replies.
//!
//! Handlers read as flat sequences: parse, verify, submit or read, reply. Commands go
//! to the single writer after their envelope is verified here, on any core; reads go
//! to a pool of read-only connections on blocking threads. Every error reply is built
//! by [`error::ApiError`], and [`error::recover`] turns warp's own rejections into it.

pub mod error;
pub mod limit;
mod replies;
pub mod server;
pub mod web;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::Semaphore;
use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};
use warp::{Filter, Rejection};

use crate::clock::Clock;
use crate::core::board::{Board, Notification};
use crate::core::geo::{POINT_DECIMALS_MAX, Point};
use crate::core::ids::{AccountId, Id};
use crate::core::protocol::{self, ENVELOPE_BYTES_MAX};
use crate::core::rides::RideObject;
use crate::core::time::Timestamp;
use crate::http::error::ApiError;
use crate::store::StoreError;
use crate::store::read::{PAGE_LEAVES_MAX, PAGE_POSTINGS_MAX, Reader};
use crate::store::writer::WriterHandle;

/// Largest request body: one envelope.
pub const REQUEST_BYTES_MAX: u64 = ENVELOPE_BYTES_MAX as u64;
/// A request body must arrive within this time once its headers have.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a command may wait for the writer before the client hears 503 `busy`.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads running at once on blocking threads; more wait their turn.
pub const READS_CONCURRENT_MAX: usize = 16;
/// Postings per page when the client does not say.
pub const PAGE_POSTINGS_DEFAULT: u32 = 50;

/// Every route the service answers, as (method, path) in OpenAPI's notation.
/// A test checks this list against `openapi.json` and against the live server.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/commands"),
    ("GET", "/v1/ledger"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{id}"),
    ("GET", "/v1/accounts/{id}/postings"),
    ("GET", "/v1/meeting-points"),
    ("GET", "/v1/offers"),
    ("GET", "/v1/offers/{id}"),
    ("GET", "/v1/requests/{id}"),
    ("GET", "/v1/requests/{id}/matches"),
    ("GET", "/v1/requests/{id}/events"),
    ("GET", "/v1/bookings"),
    ("GET", "/v1/bookings/{id}"),
    ("GET", "/v1/accounts/{id}/rides"),
    ("GET", "/v1/accounts/{id}/events"),
    ("GET", "/v1/checkpoint"),
    ("GET", "/v1/log"),
    ("GET", "/v1/proof/inclusion"),
    ("GET", "/v1/proof/consistency"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/assets/{file}"),
];

/// The methods [`ROUTES`] serve on `path` (`{…}` stands for any one segment), for the
/// `Allow` header of a 405 reply; `None` if no route has that path.
pub fn allowed_methods(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let matches = |template: &str| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(part, segment)| if part.starts_with('{') { !segment.is_empty() } else { part == segment })
    };
    let methods: Vec<&str> =
        ROUTES.iter().filter(|(_, template)| matches(template)).map(|(method, _)| *method).collect();
    (!methods.is_empty()).then(|| methods.join(", "))
}

/// The OpenAPI description of every route, compiled in.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Live event streams open at once; more are refused with 503 until one closes.
pub const STREAMS_MAX: usize = 256;
/// Live event streams open at once from one address (a desk's several screens fit;
/// one client cannot take them all).
pub const STREAMS_PER_CLIENT_MAX: usize = 16;

/// What the handlers share.
pub struct App {
    pub writer: WriterHandle,
    pub reader: Arc<Reader>,
    pub reads: Semaphore,
    /// Open offers and requests, for matching and listings; kept by the writer.
    pub board: Arc<std::sync::RwLock<Board>>,
    /// What the writer's commits mean for the live streams.
    pub notifications: tokio::sync::broadcast::Sender<Notification>,
    /// Live streams open, in all and per address.
    pub streams: Arc<server::Counts>,
    pub clock: Clock,
    /// Set when the service stops, to end the live streams.
    pub stopping: tokio::sync::watch::Sender<bool>,
    pub limiter: limit::RateLimiter,
}

/// All routes, with the rejection handler.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let limited = warp::ext::optional::<server::ClientAddr>()
        .and(warp::any().map({
            let app = app.clone();
            move || app.clone()
        }))
        .and_then(|client: Option<server::ClientAddr>, app: Arc<App>| async move {
            if app.limiter.allow(client.map(|client| client.0.ip()), std::time::Instant::now()) {
                Ok(())
            } else {
                Err(warp::reject::custom(limit::RateLimited))
            }
        })
        .untuple_one();
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
    let rides = ride_routes(with_app.clone());
    let page = warp::path::end().and(warp::get()).map(web::index);
    let assets = warp::path!("assets" / String).and(warp::get()).map(web::asset);
    let health = warp::path!("healthz").and(warp::get()).and(with_app).then(get_health);
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .map(|| reply::with_header(OPENAPI_JSON, "content-type", "application/json").into_response());
    let all = commands
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
        .or(rides)
        .unify()
        .or(health)
        .unify()
        .or(page)
        .unify()
        .or(assets)
        .unify()
        .or(openapi)
        .unify();
    limited.and(all).recover(error::recover).unify()
}

async fn post_command(
    app: Arc<App>,
    content_length: Option<u64>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
) -> Response {
    let bytes = match read_body(content_length, body).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // The rest of the body was not read: the connection cannot carry another
            // request, and the client must be told so rather than find it closed.
            let mut response = error.into_response();
            response.headers_mut().insert("connection", warp::http::HeaderValue::from_static("close"));
            return response;
        }
    };
    let command = match protocol::prepare_envelope(&bytes) {
        Ok(command) => command,
        Err(error) => return ApiError::from(error).into_response(),
    };
    match tokio::time::timeout(SUBMIT_TIMEOUT, app.writer.submit(command)).await {
        Ok(Ok(receipt)) => reply::json(&replies::receipt(&receipt)).into_response(),
        Ok(Err(error)) => ApiError::from(error).into_response(),
        Err(_) => {
            let message = "the ledger is very busy; your command may still be recorded: post the same envelope \
                           again to get its receipt, or its refusal";
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message).into_response()
        }
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
    if before.is_some_and(|before| before > i64::MAX as u64) {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "before is past any leaf index")
            .into_response();
    }
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

/// The ride reads: meeting points, the public listing, offers, requests, bookings,
/// matches and the live stream of a request.
fn ride_routes(
    with_app: impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let points = warp::path!("v1" / "meeting-points").and(warp::get()).and(with_app.clone()).map(|app: Arc<App>| {
        let board = app.board.read().expect("the board's lock");
        reply::json(&replies::meeting_points(board.points())).into_response()
    });
    let listing = warp::path!("v1" / "offers")
        .and(warp::get())
        .and(warp::query::<ListingQuery>())
        .and(with_app.clone())
        .map(get_listing);
    let offer = warp::path!("v1" / "offers" / String)
        .and(warp::get())
        .and(with_app.clone())
        .then(|id, app| get_ride(app, "offer", id));
    let request = warp::path!("v1" / "requests" / String)
        .and(warp::get())
        .and(with_app.clone())
        .then(|id, app| get_ride(app, "request", id));
    let booking = warp::path!("v1" / "bookings" / String)
        .and(warp::get())
        .and(with_app.clone())
        .then(|id, app| get_ride(app, "booking", id));
    let matches =
        warp::path!("v1" / "requests" / String / "matches").and(warp::get()).and(with_app.clone()).then(get_matches);
    let events = warp::path!("v1" / "requests" / String / "events")
        .and(warp::get())
        .and(warp::ext::optional::<server::ClientAddr>())
        .and(with_app.clone())
        .then(get_events);
    let account_list = warp::path!("v1" / "accounts")
        .and(warp::get())
        .and(warp::query::<AccountsQuery>())
        .and(with_app.clone())
        .then(get_accounts);
    let booking_list = warp::path!("v1" / "bookings")
        .and(warp::get())
        .and(warp::query::<BookingsQuery>())
        .and(with_app.clone())
        .then(get_bookings);
    let account_rides = warp::path!("v1" / "accounts" / String / "rides")
        .and(warp::get())
        .and(with_app.clone())
        .then(get_account_rides);
    let account_events = warp::path!("v1" / "accounts" / String / "events")
        .and(warp::get())
        .and(warp::ext::optional::<server::ClientAddr>())
        .and(with_app)
        .then(get_account_events);
    points
        .or(listing)
        .unify()
        .or(offer)
        .unify()
        .or(request)
        .unify()
        .or(booking)
        .unify()
        .or(matches)
        .unify()
        .or(events)
        .unify()
        .or(account_rides)
        .unify()
        .or(account_events)
        .unify()
        .or(account_list)
        .unify()
        .or(booking_list)
        .unify()
}

/// `?status=pending|active&custodial=true`: the desk's lists of members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsQuery {
    status: String,
    custodial: Option<bool>,
}

async fn get_accounts(query: AccountsQuery, app: Arc<App>) -> Response {
    if !matches!(query.status.as_str(), "pending" | "active") {
        let message = "status must be \"pending\" or \"active\"";
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).into_response();
    }
    let custodial = query.custodial.unwrap_or(false);
    match read(&app, move |reader| reader.accounts_with_status(&query.status, custodial)).await {
        Ok(views) => reply::json(&replies::accounts(&views)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `?status=disputed`, and the other booking statuses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BookingsQuery {
    status: String,
}

async fn get_bookings(query: BookingsQuery, app: Arc<App>) -> Response {
    const STATUSES: [&str; 9] =
        ["requested", "accepted", "completed", "disputed", "settled", "released", "declined", "cancelled", "expired"];
    if !STATUSES.contains(&query.status.as_str()) {
        let message = format!("status must be one of {}", STATUSES.join(", "));
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).into_response();
    }
    match read(&app, move |reader| reader.bookings_with_status(&query.status)).await {
        Ok(objects) => reply::json(&replies::bookings(&objects)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Radius of the public listing when the client does not say, and at most.
pub const LISTING_RADIUS_KM_DEFAULT: u32 = 10;
pub const LISTING_RADIUS_KM_MAX: u32 = 50;
/// How far ahead the public listing looks by default, and at most, in days.
pub const LISTING_DAYS_DEFAULT: i64 = 7;
pub const LISTING_DAYS_MAX: i64 = 31;

/// `?lat=&lon=&radius_km=&from=&to=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListingQuery {
    lat: String,
    lon: String,
    radius_km: Option<u32>,
    from: Option<String>,
    to: Option<String>,
}

fn get_listing(query: ListingQuery, app: Arc<App>) -> Response {
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).into_response();
    let Ok(point) = Point::parse(&query.lat, &query.lon, POINT_DECIMALS_MAX) else {
        return invalid("lat and lon must be decimal degrees such as 45.251 and 1.323".into());
    };
    let radius_km = query.radius_km.unwrap_or(LISTING_RADIUS_KM_DEFAULT);
    if !(1..=LISTING_RADIUS_KM_MAX).contains(&radius_km) {
        return invalid(format!("radius_km must be 1 to {LISTING_RADIUS_KM_MAX}"));
    }
    let now = app.clock.now();
    let time = |text: &Option<String>, default: Timestamp| match text {
        Some(text) => Timestamp::parse(text).ok(),
        None => Some(default),
    };
    let Some(from) = time(&query.from, now) else { return invalid("from must be an RFC 3339 UTC time".into()) };
    let Some(to) = time(&query.to, from.plus_ms(LISTING_DAYS_DEFAULT * 86_400_000)) else {
        return invalid("to must be an RFC 3339 UTC time".into());
    };
    if to < from || to.unix_ms() - from.unix_ms() > LISTING_DAYS_MAX * 86_400_000 {
        return invalid(format!("to must follow from by at most {LISTING_DAYS_MAX} days"));
    }
    let listings = app.board.read().expect("the board's lock").near(point, radius_km * 1000, from.max(now), to);
    reply::json(&replies::listings(&listings)).into_response()
}

fn unknown_ride(id: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::new(StatusCode::NOT_FOUND, "unknown_ride", format!("there is no offer, request or booking \"{shown}\""))
}

async fn get_ride(app: Arc<App>, kind: &'static str, id: String) -> Response {
    if Id::parse("id", &id).is_err() {
        return unknown_ride(&id).into_response();
    }
    let key = id.clone();
    match read(&app, move |reader| reader.ride_object(kind, &key)).await {
        Ok(Some(RideObject::Offer(offer))) => reply::json(&replies::offer(&offer)).into_response(),
        Ok(Some(RideObject::Request(request))) => reply::json(&replies::request(&request)).into_response(),
        Ok(Some(RideObject::Booking(booking))) => reply::json(&replies::booking(&booking)).into_response(),
        Ok(_) => unknown_ride(&id).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn get_account_rides(id: String, app: Arc<App>) -> Response {
    let account = match parse_account(&id) {
        Ok(account) => account,
        Err(error) => return error.into_response(),
    };
    match read(&app, move |reader| reader.rides_of(&account)).await {
        Ok(objects) => reply::json(&replies::rides(&id, &objects)).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn get_matches(id: String, app: Arc<App>) -> Response {
    let Ok(request_id) = Id::parse("request", &id) else { return unknown_ride(&id).into_response() };
    let found = {
        let board = app.board.read().expect("the board's lock");
        board.request(&request_id).map(|request| board.matches(request, app.clock.now()))
    };
    if let Some(found) = found {
        return reply::json(&replies::matches(&id, &found)).into_response();
    }
    // Not open: withdrawn (no matches) or unknown.
    let key = id.clone();
    match read(&app, move |reader| reader.ride_object("request", &key)).await {
        Ok(Some(_)) => reply::json(&replies::matches(&id, &[])).into_response(),
        Ok(None) => unknown_ride(&id).into_response(),
        Err(error) => error.into_response(),
    }
}

/// How often an idle event stream sends a comment, so that proxies keep it open.
pub const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A request's live stream: first its current matches, then each new fitting offer
/// and each change to its bookings, as server-sent events.
async fn get_events(id: String, client: Option<server::ClientAddr>, app: Arc<App>) -> Response {
    let Ok(request_id) = Id::parse("request", &id) else { return unknown_ride(&id).into_response() };
    // Subscribed before the opening is read, so that no change falls between the two.
    let receiver = app.notifications.subscribe();
    let first = {
        let board = app.board.read().expect("the board's lock");
        board.request(&request_id).map(|request| board.matches(request, app.clock.now()))
    };
    let Some(first) = first else {
        let message = format!("there is no open request \"{id}\" to follow");
        return ApiError::new(StatusCode::NOT_FOUND, "unknown_ride", message).into_response();
    };
    let permit = match enter_stream(&app, client) {
        Ok(permit) => permit,
        Err(error) => return error.into_response(),
    };
    let opening = warp::sse::Event::default().event("matches").json_data(replies::matches(&id, &first));
    live_stream(&app, receiver, permit, opening.ok(), move |notification| notification.request() == &request_id)
}

/// A member's live stream: first their rides (as `GET /v1/accounts/{id}/rides`), then
/// each change to a booking they drive or ride in, as server-sent events. A driver's
/// page learns of a new booking this way.
async fn get_account_events(id: String, client: Option<server::ClientAddr>, app: Arc<App>) -> Response {
    let account = match parse_account(&id) {
        Ok(account) => account,
        Err(error) => return error.into_response(),
    };
    // Subscribed before the opening is read, so that no change falls between the two.
    let receiver = app.notifications.subscribe();
    let rides = {
        let account = account.clone();
        read(&app, move |reader| match reader.account(&account)? {
            Some(_) => reader.rides_of(&account).map(Some),
            None => Ok(None),
        })
        .await
    };
    let objects = match rides {
        Ok(Some(objects)) => objects,
        Ok(None) => return unknown_account(&id).into_response(),
        Err(error) => return error.into_response(),
    };
    let permit = match enter_stream(&app, client) {
        Ok(permit) => permit,
        Err(error) => return error.into_response(),
    };
    let opening = warp::sse::Event::default().event("rides").json_data(replies::rides(&id, &objects));
    live_stream(&app, receiver, permit, opening.ok(), move |notification| notification.concerns(&account))
}

/// A place for one more live stream, or the 503 that says there is none.
fn enter_stream(app: &App, client: Option<server::ClientAddr>) -> Result<server::Slot, ApiError> {
    let address = client.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |client| client.0.ip());
    app.streams.enter(address, STREAMS_MAX, STREAMS_PER_CLIENT_MAX).map_err(|full| {
        let message = match full {
            server::Full::All => format!("{STREAMS_MAX} live streams are open, the most allowed; try again later"),
            server::Full::Client => format!(
                "{STREAMS_PER_CLIENT_MAX} live streams are open from your address, the most allowed; close one first"
            ),
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_streams", message)
    })
}

/// A live stream: `opening`, then the notifications `wanted` picks as server-sent
/// events (`reload` if the stream fell behind), until the client leaves or the
/// service stops.
fn live_stream(
    app: &App,
    receiver: tokio::sync::broadcast::Receiver<Notification>,
    permit: server::Slot,
    opening: Option<warp::sse::Event>,
    wanted: impl Fn(&Notification) -> bool + Send + Sync + 'static,
) -> Response {
    let stopping = app.stopping.subscribe();
    // A connection holding a stream sends no command meanwhile: group commit does
    // not wait for it.
    let away = app.writer.senders().step_away();
    let updates = futures_util::stream::unfold((receiver, stopping, (permit, away), wanted), |mut state| async move {
        loop {
            let (receiver, stopping, _, wanted) = &mut state;
            let notification = tokio::select! {
                notification = receiver.recv() => notification,
                _ = stopping.changed() => return None,
            };
            let event = match notification {
                Ok(notification) if wanted(&notification) => event_of(&notification),
                Ok(_) => continue,
                // Fell behind: the client should reload what it shows.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    warp::sse::Event::default().event("reload").data("{}")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok::<_, Infallible>(event), state));
        }
    });
    let opening = futures_util::stream::iter(opening.map(Ok::<_, Infallible>));
    let stream = opening.chain(updates);
    warp::sse::reply(warp::sse::keep_alive().interval(STREAM_KEEP_ALIVE).stream(stream)).into_response()
}

fn event_of(notification: &Notification) -> warp::sse::Event {
    let event = match notification {
        Notification::Match { found, .. } => {
            warp::sse::Event::default().event("match").json_data(replies::found(found))
        }
        Notification::Booking { booking, status, .. } => {
            warp::sse::Event::default().event("booking").json_data(replies::booking_change(booking, status))
        }
    };
    event.unwrap_or_else(|_| warp::sse::Event::default().event("reload").data("{}"))
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
