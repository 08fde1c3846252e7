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

/// Puts a ledger's tree back as schema version 4 kept it: hashes keyed by (level,
/// node_index), in their own table, and migration 5 not yet run.
fn as_written_by_schema_4(database: &std::path::Path) {
    use covoit::core::merkle::{self, Frontier};
    let connection = rusqlite::Connection::open(database).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE merkle_nodes (
                 level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
                 node_index INTEGER NOT NULL CHECK (node_index >= 0),
                 hash BLOB NOT NULL CHECK (length(hash) = 32),
                 PRIMARY KEY (level, node_index)
             ) WITHOUT ROWID;
             DROP TABLE merkle_hashes;
             DELETE FROM schema_migrations WHERE version = 5;",
        )
        .unwrap();
    let mut statement = connection.prepare("SELECT bytes FROM leaves ORDER BY leaf_index").unwrap();
    let leaves: Vec<Vec<u8>> = statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
    let mut frontier = Frontier::new();
    for leaf in &leaves {
        for node in frontier.push(merkle::leaf_hash(leaf)) {
            connection
                .execute(
                    "INSERT INTO merkle_nodes VALUES (?1, ?2, ?3)",
                    rusqlite::params![node.level, node.index as i64, node.hash.as_slice()],
                )
                .unwrap();
        }
    }
}

/// Migration 5 re-keys the tree's hashes: they are rebuilt from the leaves at the next
/// start, must give the root the stored checkpoint signed, and proofs and the audit
/// carry on. A log changed before the migration is refused, not re-signed.
#[test]
fn the_tree_is_rebuilt_in_stored_order_and_checked_against_its_checkpoint() {
    let mut app = TestApp::spawn();
    let members: Vec<Member> = (1..=3).map(Member::new).collect();
    for (member, name) in members.iter().zip(["Alice", "Bob", "Carol"]) {
        app.join(member, name);
        app.issue(member, "9.00");
    }
    for round in 0..7 {
        let (from, to) = (&members[round % 3], &members[(round + 1) % 3]);
        app.accept(&from.key, &app.transfer_body(from, &to.id, "0.35"));
    }
    let size = app.size();
    let (_, proof_before) = app.get(&format!("/v1/proof/consistency?from=5&to={size}"));
    app.stop();
    let database = app.folder.path().join("covoit.db");
    let spare = app.folder.path().join("spare.db");
    let derived = app.folder.path().join("covoit-derived.db");
    let spare_derived = app.folder.path().join("spare-derived.db");
    std::fs::copy(&database, &spare).unwrap();
    std::fs::copy(&derived, &spare_derived).unwrap();

    as_written_by_schema_4(&database);
    let audit = |database: &std::path::Path| {
        let options = covoit::audit::Options { strict: false, since: Vec::new(), ledger_key: None, seed: [7; 32] };
        let mut source = covoit::audit::DatabaseSource::open(database).unwrap();
        let (report, auditor) = covoit::audit::run(&mut source, options, &|_, _| {}).expect("the ledger audits clean");
        source.check_derived(&auditor, &report).expect("its stored tree gives the checkpoint's root");
    };
    // An old backup, not migrated, is audited as it is.
    audit(&database);
    app.restart();
    assert_eq!(app.size(), size);
    let (status, proof_after) = app.get(&format!("/v1/proof/consistency?from=5&to={size}"));
    assert_eq!(status, 200, "{proof_after}");
    assert_eq!(proof_after, proof_before, "the same tree, keyed anew");
    let receipt = app.accept(&members[0].key, &app.transfer_body(&members[0], &members[1].id, "1.00"));
    let (status, inclusion) = app.get(&format!("/v1/proof/inclusion?index={}&size={}", receipt["index"], size + 1));
    assert_eq!(status, 200, "{inclusion}");
    app.stop();
    audit(&database);

    // The spare copy again, with a leaf inside the log changed before the migration
    // runs (the derived file, which checks only the log's last leaf, is its own).
    std::fs::rename(&spare, &database).unwrap();
    std::fs::rename(&spare_derived, &derived).unwrap();
    as_written_by_schema_4(&database);
    {
        let connection = rusqlite::Connection::open(&database).unwrap();
        let tampered = 3;
        let bytes: Vec<u8> = connection
            .query_row("SELECT bytes FROM leaves WHERE leaf_index = ?1", [tampered], |row| row.get(0))
            .unwrap();
        let mut leaf: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        leaf["accepted_at"] = "2031-01-01T00:00:00.000Z".into();
        let changed = covoit::core::canonical::to_canonical_vec(&leaf);
        connection
            .execute("UPDATE leaves SET bytes = ?1 WHERE leaf_index = ?2", rusqlite::params![changed, tampered])
            .unwrap();
    }
    let refused = app.try_restart().expect_err("a log that does not give its checkpoint's root is not re-signed");
    assert!(refused.contains("checkpoint signed"), "{refused}");
}
