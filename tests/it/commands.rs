//! Each command's happy path, and what it does to balances and the log.

use crate::support::{Member, TestApp};

#[test]
fn a_village_joins_buys_pays_and_redeems() {
    let app = TestApp::spawn();
    let alice = Member::new(1);
    let baker = Member::new(2);
    assert_eq!(app.size(), 1, "a new ledger holds only its genesis leaf");

    // Registration: pending until the desk approves.
    let receipt = app.accept(&alice.key, &app.register_body(&alice, "Alice Martin"));
    assert_eq!(receipt["index"], 1);
    assert_eq!(receipt["seq"], "0");
    assert_eq!(receipt["postings"], serde_json::json!([]));
    let account = app.account(&alice.id);
    assert_eq!(account["status"], "pending");
    assert_eq!(account["name"], "Alice Martin");
    assert_eq!(account["next_seq"], "1");
    assert_eq!(account["floor"], "0.00");
    app.accept(&app.operator, &app.approve_body(&alice.id));
    assert_eq!(app.account(&alice.id)["status"], "active");
    app.join(&baker, "Boulangerie Ayen");

    // Issue: euros at the desk become Y'ACA.
    let receipt = app.accept(&app.operator, &app.issue_body(&alice.id, "20.00"));
    assert_eq!(
        receipt["postings"],
        serde_json::json!([{"account": "reserve", "amount": "-20.00"}, {"account": alice.id, "amount": "20.00"}])
    );
    assert_eq!(app.balance("reserve"), "-20.00");

    // Transfer: Alice buys bread.
    app.accept(&alice.key, &app.transfer_body(&alice, &baker.id, "3.45"));
    assert_eq!(app.balance(&alice.id), "16.55");
    assert_eq!(app.balance(&baker.id), "3.45");

    // Credit line: the desk lets the baker go down to -10.00.
    app.accept(&app.operator, &app.credit_body(&baker.id, "-10.00"));
    let account = app.account(&baker.id);
    assert_eq!(account["floor"], "-10.00");
    assert_eq!(account["available"], "3.45");

    // Redeem: the baker takes euros back at the desk.
    let receipt = app.accept(&baker.key, &app.redeem_body(&baker, "3.00"));
    assert_eq!(
        receipt["postings"],
        serde_json::json!([{"account": baker.id, "amount": "-3.00"}, {"account": "reserve", "amount": "3.00"}])
    );
    assert_eq!(app.balance(&baker.id), "0.45");
    assert_eq!(app.balance("reserve"), "-17.00", "circulation = issued - redeemed");

    // The operator's account counts its commands and holds no money.
    let operator = app.account("operator");
    assert_eq!(operator["status"], "operator");
    assert_eq!(operator["balance"], "0.00");
    assert_eq!(operator["floor"], serde_json::Value::Null);
    assert_eq!(operator["next_seq"], "4");
    let reserve = app.account("reserve");
    assert_eq!(reserve["floor"], serde_json::Value::Null);
    assert_eq!(app.size(), 9);

    // The ledger describes itself.
    let (status, ledger) = app.get("/v1/ledger");
    assert_eq!(status, 200);
    assert_eq!(ledger["ledger"], "covoit/test/ayen");
    assert_eq!(ledger["currency"], serde_json::json!({"code": "Y'ACA", "decimals": 2}));
    assert_eq!(ledger["operator_key"], covoit::core::protocol::base64_encode(app.operator.verifying_key().as_bytes()));
    assert_eq!(ledger["policy"]["fare_per_km"], "0.06");
    assert_eq!(ledger["policy"]["trip_km_max"], "25");
    let (status, health) = app.get("/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

#[test]
fn an_account_history_pages_newest_first_with_running_balances() {
    let app = TestApp::spawn();
    let alice = Member::new(1);
    let baker = Member::new(2);
    app.join(&alice, "Alice");
    app.join(&baker, "Baker");
    app.issue(&alice, "10.00");
    for cents in 1..=5 {
        app.accept(&alice.key, &app.transfer_body(&alice, &baker.id, &format!("0.0{cents}")));
    }
    let (status, page) = app.get(&format!("/v1/accounts/{}/postings?limit=4", alice.id));
    assert_eq!(status, 200, "{page}");
    let lines = page["postings"].as_array().unwrap();
    assert_eq!(lines.len(), 4);
    let amounts: Vec<&str> = lines.iter().map(|line| line["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, ["-0.05", "-0.04", "-0.03", "-0.02"]);
    let balances: Vec<&str> = lines.iter().map(|line| line["balance_after"].as_str().unwrap()).collect();
    assert_eq!(balances, ["9.85", "9.90", "9.94", "9.97"]);
    assert_eq!(lines[0]["type"], "transfer");
    assert_eq!(lines[0]["counterparties"], serde_json::json!([baker.id]));
    let before = page["next_before"].as_u64().expect("a next page");
    let (_, rest) = app.get(&format!("/v1/accounts/{}/postings?limit=4&before={before}", alice.id));
    let rest = rest["postings"].as_array().unwrap();
    let amounts: Vec<&str> = rest.iter().map(|line| line["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, ["-0.01", "10.00"]);
    assert_eq!(rest[1]["balance_after"], "10.00");
    assert_eq!(rest[1]["memo"], "euros received at the desk");
    assert_eq!(rest[1]["counterparties"], serde_json::json!(["reserve"]));
    // Reads refuse what they cannot answer, in the error shape.
    let (status, reply) = app.get(&format!("/v1/accounts/{}/postings?limit=0", alice.id));
    assert_eq!((status, crate::support::code(&reply)), (400, "invalid_query"));
    let (status, reply) = app.get(&format!("/v1/accounts/{}/postings?limit=abc", alice.id));
    assert_eq!((status, crate::support::code(&reply)), (400, "invalid_query"));
    let (status, reply) = app.get(&format!("/v1/accounts/{}/postings?colour=red", alice.id));
    assert_eq!((status, crate::support::code(&reply)), (400, "invalid_query"));
    let (status, reply) = app.get("/v1/accounts/00000000-0000-4000-8000-00000000ffff/postings");
    assert_eq!((status, crate::support::code(&reply)), (404, "unknown_account"));
    let (status, reply) = app.get("/v1/accounts/nobody");
    assert_eq!((status, crate::support::code(&reply)), (404, "unknown_account"));
    let (status, reply) = app.get("/v2/nothing");
    assert_eq!((status, crate::support::code(&reply)), (404, "not_found"));
}
