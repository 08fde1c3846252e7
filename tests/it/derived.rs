//! The derived tables (balances, histories, rides, the (account, seq) look-up) live
//! in their own file beside the log and are written behind it. At start they are
//! checked against the log and caught up from it: a stale, missing or foreign file
//! gives the same balances, histories and receipts as the one the service left.

use std::path::Path;

use covoit::audit::{self, DatabaseSource, DerivedCheck, Options};
use covoit::core::protocol::sign_body;
use serde_json::Value;

use crate::support::{Member, TestApp};

/// What a resident can read: every balance and every history page.
fn readings(app: &TestApp, members: &[Member]) -> Vec<Value> {
    let mut seen = Vec::new();
    for id in members.iter().map(|member| member.id.as_str()).chain(["operator", "reserve"]) {
        seen.push(app.account(id));
        seen.push(app.get(&format!("/v1/accounts/{id}/postings?limit=200")).1);
    }
    seen
}

fn pay_round(app: &TestApp, members: &[Member], amount: &str) {
    for (from, to) in members.iter().zip(members.iter().cycle().skip(1)) {
        app.accept(&from.key, &app.transfer_body(from, &to.id, amount));
    }
}

fn audit_derived(folder: &Path) -> DerivedCheck {
    let path = folder.join("covoit.db");
    let options = Options { strict: false, since: Vec::new(), ledger_key: None, seed: [7; 32] };
    let (report, auditor) = audit::run(&mut DatabaseSource::open(&path).unwrap(), options, &|_, _| {}).unwrap();
    DatabaseSource::open(&path).unwrap().check_derived(&auditor, &report).unwrap()
}

#[test]
fn stale_missing_or_foreign_derived_tables_are_rebuilt_from_the_log() {
    let mut app = TestApp::spawn();
    let members: Vec<Member> = (1..=4).map(Member::new).collect();
    for (member, name) in members.iter().zip(["Alice", "Bob", "Carol", "Dan"]) {
        app.join(member, name);
        app.issue(member, "20.00");
    }
    pay_round(&app, &members, "1.25");
    app.stop();
    let derived = app.folder.path().join("covoit-derived.db");
    let stale = app.folder.path().join("stale-derived.db");
    std::fs::copy(&derived, &stale).unwrap();

    app.restart();
    pay_round(&app, &members, "0.40");
    let paid = sign_body(&members[0].key, &app.transfer_body(&members[0], &members[2].id, "2.00"));
    let (status, receipt) = app.post(&paid);
    assert_eq!(status, 200, "{receipt}");
    let expected = readings(&app, &members);
    let size = app.size();
    app.stop();
    assert_eq!(audit_derived(app.folder.path()), DerivedCheck::Compared { leaves: size }, "a clean stop is caught up");

    // The derived tables as they were a restart ago: the leaves since are replayed.
    std::fs::copy(&stale, &derived).unwrap();
    assert_eq!(
        audit_derived(app.folder.path()),
        DerivedCheck::Behind { covered: size - 5, leaves: size },
        "the audit says what it could not compare"
    );
    app.restart();
    assert_eq!(readings(&app, &members), expected, "caught up from a stale file");
    assert_eq!(app.post(&paid), (200, receipt.clone()), "the same envelope, the same receipt");

    // No derived tables at all: rebuilt from the genesis.
    app.stop();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", derived.display()));
    }
    app.restart();
    assert_eq!(readings(&app, &members), expected, "rebuilt from nothing");
    assert_eq!(app.post(&paid), (200, receipt.clone()));

    // Another ledger's derived tables: told apart and rebuilt.
    let mut other = TestApp::spawn();
    other.join(&Member::new(9), "Eve");
    other.stop();
    app.stop();
    std::fs::copy(other.folder.path().join("covoit-derived.db"), &derived).unwrap();
    app.restart();
    assert_eq!(readings(&app, &members), expected, "a foreign file is replaced");
    app.stop();
    assert_eq!(audit_derived(app.folder.path()), DerivedCheck::Compared { leaves: size });
}

#[test]
fn a_read_after_a_reply_sees_the_write() {
    let app = TestApp::spawn();
    let members: Vec<Member> = (1..=2).map(Member::new).collect();
    for (member, name) in members.iter().zip(["Alice", "Bob"]) {
        app.join(member, name);
    }
    app.issue(&members[0], "50.00");
    // Each read right after its reply: the indexer writes behind the log, and a read
    // waits for it to cover what was committed when the read began.
    for round in 1..=40 {
        app.accept(&members[0].key, &app.transfer_body(&members[0], &members[1].id, "0.10"));
        let cents = 5000 - 10 * round;
        assert_eq!(app.balance(&members[0].id), format!("{}.{:02}", cents / 100, cents % 100));
        let (_, page) = app.get(&format!("/v1/accounts/{}/postings?limit=1", members[1].id));
        assert_eq!(page["postings"][0]["index"].as_u64(), Some(app.size() - 1));
    }
}
