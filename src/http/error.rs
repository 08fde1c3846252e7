//! Every refusal the HTTP service gives: a status, a stable code and a sentence,
//! as `{"error": {"code", "message"}}`.
//!
//! This is the one place where errors of the inner layers become statuses, and
//! [`recover`] is the one rejection handler, so that no route can answer a client's
//! mistake with anything but this shape (and never with a 500).

use std::convert::Infallible;

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};

use crate::core::ledger::Refusal;
use crate::core::protocol::ProtocolError;
use crate::store::StoreError;
use crate::store::writer::SubmitError;

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: &self.message } };
        reply::with_status(reply::json(&body), self.status).into_response()
    }

    pub fn storage(error: &StoreError) -> ApiError {
        tracing::error!(%error, "storage failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the ledger's storage is unavailable right now; nothing was changed, try again shortly",
        )
    }
}

impl From<ProtocolError> for ApiError {
    fn from(error: ProtocolError) -> ApiError {
        let status = match error {
            ProtocolError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProtocolError::WeakKey | ProtocolError::BadSignature => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = match refusal {
            Refusal::WrongLedger { .. } | Refusal::Expired { .. } | Refusal::UnexpectedEvent(_) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::NotAMember(_) | Refusal::SelfTransfer => StatusCode::BAD_REQUEST,
            Refusal::UnknownAccount(_) | Refusal::UnknownPoint(_) | Refusal::UnknownRide(_) => StatusCode::NOT_FOUND,
            Refusal::WeakKey => StatusCode::UNAUTHORIZED,
            Refusal::WrongKey(_)
            | Refusal::NotPermitted { .. }
            | Refusal::AccountPending(_)
            | Refusal::NotCustodial(_)
            | Refusal::NotYours(_) => StatusCode::FORBIDDEN,
            Refusal::AccountExists(_) | Refusal::KeyInUse | Refusal::AlreadyApproved(_) => StatusCode::CONFLICT,
            Refusal::SeqReused { .. } | Refusal::SeqGap { .. } => StatusCode::CONFLICT,
            Refusal::RideExists(_)
            | Refusal::RideClosed(_)
            | Refusal::NoSeats
            | Refusal::TooLate(_)
            | Refusal::TooEarly(_)
            | Refusal::WrongState { .. }
            | Refusal::NotDue(_) => StatusCode::CONFLICT,
            Refusal::InsufficientFunds { .. }
            | Refusal::FloorAboveBalance { .. }
            | Refusal::ReserveExhausted { .. }
            | Refusal::BalanceLimit(_)
            | Refusal::OwnRide
            | Refusal::NotScheduled(_)
            | Refusal::InThePast
            | Refusal::TooFarAhead
            | Refusal::TripTooShort { .. }
            | Refusal::TripTooLong { .. }
            | Refusal::DoesNotFit
            | Refusal::TooManyTrips { .. }
            | Refusal::TripsTooClose { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, refusal.code(), refusal.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> ApiError {
        match error {
            SubmitError::Refused(refusal) => refusal.into(),
            SubmitError::Invalid(error) => error.into(),
            SubmitError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", error.to_string())
            }
            SubmitError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "writer_stopped", error.to_string()),
        }
    }
}

/// The rejection handler: warp's own rejections in our error shape.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    if rejection.find::<crate::http::limit::RateLimited>().is_some() {
        let message = "too many requests from this address; slow down and try again in a second";
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
        response.headers_mut().insert("retry-after", warp::http::HeaderValue::from_static("1"));
        return Ok(response);
    }
    let error = if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is no such route; GET /openapi.json lists them all")
    } else if let Some(query) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("the query string is not right: {query}"))
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
    } else if let Some(header) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", header.to_string())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is too large")
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed; this is a bug, please report it",
        )
    };
    Ok(error.into_response())
}
