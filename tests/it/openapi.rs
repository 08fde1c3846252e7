//! `/openapi.json` stays true: every served route is described, every described route
//! is served, and every error code the service can give is listed.

use std::collections::BTreeSet;

use covoit::http::{OPENAPI_JSON, ROUTES};
use serde_json::Value;

use crate::support::TestApp;

fn described_routes(openapi: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn every_route_is_described_and_every_description_is_served() {
    let openapi: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
    assert_eq!(openapi["openapi"], "3.0.3");
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(described_routes(&openapi), served);

    let app = TestApp::spawn();
    let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    for (method, path) in ROUTES {
        let url = format!("{}{}", app.base, path.replace("{id}", "reserve"));
        let mut response = match *method {
            "GET" => agent.get(&url).call().unwrap(),
            "POST" => agent.post(&url).send("{}").unwrap(),
            other => panic!("a route with method {other}"),
        };
        let status = response.status().as_u16();
        // A live stream stays open: its headers are enough.
        let streaming = response.headers().get("content-type").is_some_and(|kind| kind == "text/event-stream");
        let body = if streaming { String::new() } else { response.body_mut().read_to_string().unwrap() };
        // A route that is served may still answer 404 for the id it was given; the
        // router's own 404 says "not_found".
        let router_missed = status == 405 || (status == 404 && body.contains("\"code\":\"not_found\""));
        assert!(!router_missed, "{method} {path} is not served: {status} {body}");
        let documented = &openapi["paths"][path][method.to_lowercase()]["responses"][status.to_string()];
        assert!(!documented.is_null(), "{method} {path} answered {status}, which openapi.json does not describe");
    }
    let (status, served) = app.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(served, openapi);
}

/// Error codes named in the source: `code()` arms, `ApiError::new(StatusCode::X, "code", ...)`
/// and error replies written out as JSON (`{"error":{"code":"…"`, before warp is involved).
fn codes_in_source() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut codes = BTreeSet::new();
    let files = [
        "core/protocol.rs",
        "core/ledger.rs",
        "store/writer.rs",
        "http/mod.rs",
        "http/error.rs",
        "http/web.rs",
        "http/server.rs",
    ];
    for file in files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (at, pattern) in text.match_indices(r#"{"error":{"code":""#) {
            codes.insert(text[at + pattern.len()..].split('"').next().unwrap().to_owned());
        }
        for line in text.lines().filter(|line| line.contains("ProtocolError::") || line.contains("Refusal::")) {
            if let Some((_, after)) = line.split_once("=> \"") {
                codes.insert(after.split('"').next().unwrap().to_owned());
            }
        }
        for (_, after) in text.match_indices("StatusCode::").map(|(at, _)| ((), &text[at + 12..])) {
            let rest = after.trim_start_matches(|c: char| c.is_ascii_uppercase() || c == '_');
            let rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if let Some(literal) = rest.strip_prefix('"') {
                codes.insert(literal.split('"').next().unwrap().to_owned());
            }
        }
    }
    codes
}

#[test]
fn every_error_code_is_listed() {
    let openapi: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let listed: BTreeSet<String> =
        openapi["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|code| code.as_str().unwrap().to_owned())
            .collect();
    let used = codes_in_source();
    assert!(used.len() > 30, "found {} codes: {used:?}", used.len());
    let missing: Vec<&String> = used.difference(&listed).collect();
    assert!(missing.is_empty(), "codes missing from openapi.json: {missing:?}");
    let unused: Vec<&String> = listed.difference(&used).collect();
    assert!(unused.is_empty(), "codes in openapi.json that nothing gives: {unused:?}");
}

/// A 405 says which methods the route does take (RFC 9110 §15.5.6), in the error shape.
#[test]
fn a_wrong_method_is_told_the_right_ones() {
    let app = TestApp::spawn();
    let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    let cases = [
        (agent.get(format!("{}/v1/commands", app.base)).call().unwrap(), "POST"),
        (agent.post(format!("{}/v1/ledger", app.base)).send("{}").unwrap(), "GET"),
        (agent.delete(format!("{}/v1/accounts/reserve", app.base)).call().unwrap(), "GET"),
        (agent.put(format!("{}/v1/offers/someone", app.base)).send("{}").unwrap(), "GET"),
    ];
    for (mut response, allowed) in cases {
        assert_eq!(response.status().as_u16(), 405);
        assert_eq!(response.headers().get("allow").and_then(|value| value.to_str().ok()), Some(allowed));
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    assert_eq!(covoit::http::allowed_methods("/v1/nowhere"), None);
    assert_eq!(covoit::http::allowed_methods("/v1/accounts//postings"), None);
}
