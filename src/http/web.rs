//! The residents' web page, compiled into the binary: nothing is fetched from
//! anywhere else, at install time or at run time.

use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};

use crate::http::error::ApiError;

/// Every file of the page: (path under /assets/, content type, content).
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../web/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../web/style.css")),
];

pub const INDEX_HTML: &str = include_str!("../../web/index.html");

/// The page loads only its own files and talks only to this service.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(content: &'static str, content_type: &'static str) -> Response {
    let mut response = reply::with_header(content, "content-type", content_type).into_response();
    let headers = response.headers_mut();
    headers.insert("content-security-policy", warp::http::HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", warp::http::HeaderValue::from_static("nosniff"));
    headers.insert("cache-control", warp::http::HeaderValue::from_static("no-cache"));
    response
}

pub fn index() -> Response {
    page(INDEX_HTML, "text/html; charset=utf-8")
}

pub fn asset(name: String) -> Response {
    match ASSETS.iter().find(|(path, _, _)| *path == name) {
        Some((_, content_type, content)) => page(content, content_type),
        None => ApiError::new(StatusCode::NOT_FOUND, "unknown_file", "the page has no such file").into_response(),
    }
}
