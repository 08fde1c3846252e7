//! Every refusal of `POST /v1/commands`: its status, its code, and that it changed
//! nothing — not the log's size, not an account, not a history.

use covoit::core::protocol::{BodyWire, CommandWire, Envelope, base64_encode, sign_body};
use ed25519_dalek::SigningKey;
use serde_json::Value;

use crate::support::{Member, TestApp, body_text, code, sign_raw};

/// What a refusal must leave as it was.
fn snapshot(app: &TestApp, members: &[&Member]) -> Vec<Value> {
    let mut seen = vec![app.get("/v1/ledger").1];
    for account in ["operator", "reserve"].into_iter().map(str::to_owned).chain(members.iter().map(|m| m.id.clone())) {
        seen.push(app.get(&format!("/v1/accounts/{account}")).1);
        seen.push(app.get(&format!("/v1/accounts/{account}/postings?limit=200")).1);
    }
    seen
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, envelope: &Envelope, status: u16, code: &'static str) -> Case {
    Case { name, request: serde_json::to_vec(envelope).unwrap(), status, code }
}

fn raw(name: &'static str, request: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case { name, request: request.into(), status, code }
}

#[test]
fn every_refusal_has_its_status_and_code_and_changes_nothing() {
    let app = TestApp::spawn();
    let alice = Member::new(1);
    let bob = Member::new(2);
    let pending = Member::new(3);
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.accept(&pending.key, &app.register_body(&pending, "Paul, not yet approved"));
    app.issue(&alice, "10.00");
    app.issue(&pending, "5.00");
    let before = snapshot(&app, &[&alice, &bob, &pending]);

    let transfer = app.transfer_body(&alice, &bob.id, "1.00");
    let good = body_text(&transfer);
    // A request carrying `bytes` as its body, correctly signed by Alice.
    let signed_bytes = |bytes: &[u8]| serde_json::to_vec(&sign_raw(&alice.key, bytes)).unwrap();
    let edited = |from: &str, to: &str| -> Vec<u8> {
        assert!(good.contains(from), "{from} in {good}");
        signed_bytes(good.replace(from, to).as_bytes())
    };
    // Signed bodies that are hostile inside: bytes that are not UTF-8 in a string, and
    // arrays nested 1,000 deep in a field (far beyond `canonical::DEPTH_MAX`).
    let not_utf8 = {
        let mut bytes = good.replace(r#""amount":"1.00""#, r#""amount":"1.0?""#).into_bytes();
        let at = bytes.windows(4).position(|window| window == b"1.0?").unwrap() + 3;
        bytes[at] = 0xff;
        signed_bytes(&bytes)
    };
    let deeply_nested = {
        let nested = format!(r#""amount":{}{}"#, "[".repeat(1000), "]".repeat(1000));
        edited(r#""amount":"1.00""#, &nested)
    };
    let out_of_order = {
        let moved = good.replace(r#","type":"transfer""#, "").replacen('{', r#"{"type":"transfer","#, 1);
        signed_bytes(moved.as_bytes())
    };
    let with = |change: &dyn Fn(&mut BodyWire)| {
        let mut body = transfer.clone();
        change(&mut body);
        sign_body(&alice.key, &body)
    };
    let signed = sign_body(&alice.key, &transfer);
    let mut bad_signature = signed.clone();
    bad_signature.sig = base64_encode(&[7u8; 64]);
    let mut tampered = signed.clone();
    tampered.body = base64_encode(good.replace("1.00", "9.00").as_bytes());
    let mut weak = signed.clone();
    weak.key = base64_encode(&{
        let mut identity = [0u8; 32];
        identity[0] = 1;
        identity
    });
    let stranger = SigningKey::from_bytes(&[0x77; 32]);
    let huge_memo = "x".repeat(10_000);

    let cases = vec![
        case("bad signature", &bad_signature, 401, "bad_signature"),
        case("body changed after signing", &tampered, 401, "bad_signature"),
        case("weak key", &weak, 401, "weak_key"),
        case("another account's key", &sign_body(&bob.key, &transfer), 403, "wrong_key"),
        case("a stranger's key", &sign_body(&stranger, &transfer), 403, "wrong_key"),
        case("wrong ledger", &with(&|b| set(b, "ledger", "covoit/elsewhere")), 400, "wrong_ledger"),
        case("expired", &with(&|b| set(b, "not_after", "2026-11-25T07:59:59Z")), 400, "expired"),
        raw("non-canonical body", edited(r#""amount":"1.00""#, r#""amount": "1.00""#), 400, "not_canonical"),
        raw("keys out of order", out_of_order, 400, "not_canonical"),
        raw("seq given twice", edited(r#"{"account""#, r#"{"seq":"9","account""#), 400, "duplicate_key"),
        raw(
            "duplicate JSON key",
            edited(r#""amount":"1.00""#, r#""amount":"1.00","amount":"9.00""#),
            400,
            "duplicate_key",
        ),
        raw(
            "unknown field in the body",
            edited(r#""type":"transfer""#, r#""type":"transfer","urgent":"yes""#),
            400,
            "unknown_field",
        ),
        raw("float amount", edited(r#""amount":"1.00""#, r#""amount":1.5"#), 400, "float_number"),
        raw("integer amount", edited(r#""amount":"1.00""#, r#""amount":1"#), 400, "invalid_field"),
        case("three decimals", &with(&|b| set(b, "amount", "1.005")), 400, "invalid_amount"),
        case("zero amount", &with(&|b| set(b, "amount", "0.00")), 400, "invalid_amount"),
        case("negative amount", &with(&|b| set(b, "amount", "-1.00")), 400, "invalid_amount"),
        case("too large an amount", &with(&|b| set(b, "amount", "1000000.01")), 400, "invalid_amount"),
        case("memo over 140 characters", &with(&|b| set(b, "memo", &"é".repeat(141))), 400, "invalid_field"),
        case("seq gap", &with(&|b| set(b, "seq", "5")), 409, "seq_gap"),
        case("seq reuse", &with(&|b| set(b, "seq", "0")), 409, "seq_reused"),
        case("insufficient funds", &with(&|b| set(b, "amount", "10.01")), 422, "insufficient_funds"),
        case("to oneself", &with(&|b| set(b, "to", &alice.id)), 400, "self_transfer"),
        case("to the reserve", &with(&|b| set(b, "to", "reserve")), 400, "not_a_member"),
        case("to nobody", &with(&|b| set(b, "to", "00000000-0000-4000-8000-0000000000ff")), 404, "unknown_account"),
        case("a member issuing", &sign_body(&alice.key, &member_issue(&app, &alice)), 403, "not_permitted"),
        case(
            "an unapproved account paying",
            &sign_body(&pending.key, &app.transfer_body(&pending, &alice.id, "1.00")),
            403,
            "account_pending",
        ),
        case("approving twice", &sign_body(&app.operator, &app.approve_body(&alice.id)), 409, "already_approved"),
        case(
            "registering twice",
            &sign_body(&alice.key, &app.register_body(&alice, "Alice again")),
            409,
            "account_exists",
        ),
        case(
            "a second account for one key",
            &sign_body(&alice.key, &app.register_body(&Member::new(9), "Alias")),
            409,
            "key_in_use",
        ),
        case("oversized memo body", &with(&|b| set(b, "memo", &huge_memo)), 413, "body_too_large"),
        raw("oversized request", vec![b' '; 64 * 1024], 413, "body_too_large"),
        raw("malformed JSON", "{\"body\":", 400, "malformed_json"),
        raw("not JSON at all", "hello", 400, "malformed_json"),
        raw("not UTF-8", b"{\"body\":\"\xff\"}".to_vec(), 400, "malformed_json"),
        raw("deeply nested", format!("{}{}", "[".repeat(5000), "]".repeat(5000)), 400, "malformed_json"),
        raw("empty request", "", 400, "malformed_json"),
        raw("signed body not UTF-8", not_utf8, 400, "malformed_json"),
        raw("signed body deeply nested", deeply_nested, 400, "malformed_json"),
        raw("an array", "[]", 400, "invalid_envelope"),
        raw(
            "missing signature",
            format!(r#"{{"body":"{}","key":"{}"}}"#, signed.body, signed.key),
            400,
            "invalid_envelope",
        ),
        raw(
            "unknown envelope field",
            format!(r#"{{"body":"{}","key":"{}","sig":"{}","v":"2"}}"#, signed.body, signed.key, signed.sig),
            400,
            "unknown_field",
        ),
        raw(
            "duplicate envelope key",
            format!(
                r#"{{"body":"{}","key":"{}","sig":"{}","sig":"{}"}}"#,
                signed.body, signed.key, signed.sig, signed.sig
            ),
            400,
            "duplicate_key",
        ),
        raw(
            "malformed base64",
            format!(r#"{{"body":"!!!","key":"{}","sig":"{}"}}"#, signed.key, signed.sig),
            400,
            "malformed_base64",
        ),
        raw(
            "short key",
            format!(r#"{{"body":"{}","key":"AAAA","sig":"{}"}}"#, signed.body, signed.sig),
            400,
            "invalid_key",
        ),
    ];
    for case in &cases {
        let (status, reply) = app.post_bytes(&case.request);
        assert_eq!((status, code(&reply)), (case.status, case.code), "{}: {reply}", case.name);
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.len() > 10 && !message.contains("panicked"), "{}: a sentence, got {message:?}", case.name);
        assert_eq!(snapshot(&app, &[&alice, &bob, &pending]), before, "{} changed something", case.name);
    }
    // The untouched command is still accepted afterwards: nothing was burnt.
    app.accept(&alice.key, &transfer);
}

#[test]
fn a_credit_line_is_a_floor_counted_atomically() {
    let app = TestApp::spawn();
    let alice = Member::new(1);
    let bob = Member::new(2);
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.accept(&app.operator, &app.credit_body(&alice.id, "-5.00"));
    app.accept(&alice.key, &app.transfer_body(&alice, &bob.id, "4.99"));
    let before = snapshot(&app, &[&alice, &bob]);
    let (status, reply) = app.post(&sign_body(&alice.key, &app.transfer_body(&alice, &bob.id, "0.02")));
    assert_eq!((status, code(&reply)), (422, "insufficient_funds"), "{reply}");
    assert_eq!(snapshot(&app, &[&alice, &bob]), before);
    app.accept(&alice.key, &app.transfer_body(&alice, &bob.id, "0.01"));
    assert_eq!(app.balance(&alice.id), "-5.00");
    // The desk cannot raise a floor above what the account has.
    let before = snapshot(&app, &[&alice, &bob]);
    let (status, reply) = app.post(&sign_body(&app.operator, &app.credit_body(&alice.id, "-4.99")));
    assert_eq!((status, code(&reply)), (422, "floor_above_balance"), "{reply}");
    assert_eq!(snapshot(&app, &[&alice, &bob]), before);
    // Money made by a credit line is never cashed at the desk.
    let (status, reply) = app.post(&sign_body(&bob.key, &app.redeem_body(&bob, "5.00")));
    assert_eq!((status, code(&reply)), (422, "reserve_exhausted"), "{reply}");
}

#[test]
fn a_chunked_oversized_body_is_refused_without_reading_it_all() {
    use std::io::{Read, Write};
    let app = TestApp::spawn();
    let address = app.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/commands HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'a'; 4096];
    for _ in 0..8 {
        let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = stream.write_all(&chunk);
        let _ = stream.write_all(b"\r\n");
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}

fn member_issue(app: &TestApp, member: &Member) -> BodyWire {
    BodyWire {
        ledger: app.ledger.clone(),
        account: member.id.clone(),
        seq: app.next_seq(&member.id),
        not_after: app.not_after(),
        by: None,
        command: CommandWire::Issue { to: member.id.clone(), amount: "100.00".into(), memo: None },
    }
}

/// Sets one field of a body, whatever its type.
fn set(body: &mut BodyWire, field: &str, value: &str) {
    let mut json = serde_json::to_value(&*body).unwrap();
    json[field] = Value::String(value.to_owned());
    *body = serde_json::from_value(json).unwrap();
}
