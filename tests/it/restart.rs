//! Stopping and starting the service on the same files changes nothing.

use crate::support::{Member, TestApp};

#[test]
fn a_restart_keeps_balances_sequence_numbers_and_the_log() {
    let mut app = TestApp::spawn();
    let alice = Member::new(1);
    let bob = Member::new(2);
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.issue(&alice, "12.00");
    app.accept(&alice.key, &app.transfer_body(&alice, &bob.id, "2.00"));
    app.accept(&app.operator, &app.credit_body(&bob.id, "-3.00"));
    let read_everything = |app: &TestApp| {
        let mut seen = vec![app.get("/v1/ledger").1];
        for account in ["operator", "reserve", &alice.id, &bob.id] {
            seen.push(app.get(&format!("/v1/accounts/{account}")).1);
            seen.push(app.get(&format!("/v1/accounts/{account}/postings?limit=200")).1);
        }
        seen
    };
    let before = read_everything(&app);
    let ledger_key = std::fs::read(app.folder.path().join("keys/ledger.key")).unwrap();

    app.restart();
    assert_eq!(read_everything(&app), before);
    assert_eq!(std::fs::read(app.folder.path().join("keys/ledger.key")).unwrap(), ledger_key);
    // And it carries on where it stopped.
    let receipt = app.accept(&bob.key, &app.transfer_body(&bob, &alice.id, "4.00"));
    assert_eq!(receipt["seq"], "1", "bob registered at seq 0");
    assert_eq!(receipt["index"], before[0]["size"]);
    assert_eq!(app.balance(&bob.id), "-2.00");
}

#[test]
fn a_database_without_its_ledger_key_does_not_start() {
    let mut app = TestApp::spawn();
    app.stop();
    std::fs::remove_file(app.folder.path().join("keys/ledger.key")).unwrap();
    let config = crate::support::config_for(app.folder.path(), &app.operator, app.clock.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let error = runtime.block_on(covoit::service::Service::start(config)).err().expect("refused");
    assert!(error.to_string().contains("ledger.key"), "{error}");
    // Nor with another operator key than the ledger's.
    let other = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let folder = tempfile::tempdir().unwrap();
    let first = crate::support::config_for(folder.path(), &app.operator, app.clock.clone());
    runtime.block_on(async { covoit::service::Service::start(first).await.unwrap().stop().await });
    let second = crate::support::config_for(folder.path(), &other, app.clock.clone());
    let error = runtime.block_on(covoit::service::Service::start(second)).err().expect("refused");
    assert!(error.to_string().contains("operator key"), "{error}");
}
