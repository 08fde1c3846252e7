//! The audit trail: the log and its proofs over HTTP, the signed checkpoint, and
//! `covoit audit` passing on an honest ledger and failing, with the right finding, on
//! every way an insider could change a copy of the database.

use std::path::{Path, PathBuf};

use covoit::audit::{self, DatabaseSource, Failure, Options, Report};
use covoit::core::checkpoint;
use covoit::core::leaf::{self, Content, OwnedContent};
use covoit::core::merkle::{self, Frontier, Hash};
use covoit::core::protocol::{BodyWire, CommandWire, base64_decode, base64_encode, sign_body};
use covoit::core::time::Timestamp;
use ed25519_dalek::SigningKey;
use rusqlite::{Connection, params};
use serde_json::Value;

use crate::support::{Member, TestApp, code};

/// A small village's ledger: three members, issues, payments, a credit line, a redemption.
fn village() -> (TestApp, Vec<Member>) {
    let app = TestApp::spawn();
    let members: Vec<Member> = (1..=3).map(Member::new).collect();
    for (member, name) in members.iter().zip(["Alice", "Bob", "Carol"]) {
        app.join(member, name);
    }
    app.issue(&members[0], "30.00");
    app.issue(&members[1], "10.00");
    app.accept(&members[0].key, &app.transfer_body(&members[0], &members[1].id, "3.50"));
    app.accept(&members[1].key, &app.transfer_body(&members[1], &members[2].id, "2.25"));
    app.accept(&app.operator, &app.credit_body(&members[2].id, "-5.00"));
    app.accept(&members[2].key, &app.transfer_body(&members[2], &members[0].id, "6.00"));
    app.accept(&members[0].key, &app.redeem_body(&members[0], "4.00"));
    (app, members)
}

fn hash_of(text: &str) -> Hash {
    base64_decode(text).unwrap().try_into().unwrap()
}

fn log(app: &TestApp, query: &str) -> (u16, String) {
    let mut response =
        ureq::get(&format!("{}/v1/log{query}", app.base)).config().http_status_as_error(false).build().call().unwrap();
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
}

fn checkpoint_note(app: &TestApp) -> String {
    let mut response = ureq::get(&format!("{}/v1/checkpoint", app.base)).call().unwrap();
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    response.body_mut().read_to_string().unwrap()
}

fn ledger_key(app: &TestApp) -> [u8; 32] {
    base64_decode(app.get("/v1/ledger").1["ledger_key"].as_str().unwrap()).unwrap().try_into().unwrap()
}

#[test]
fn receipts_lead_to_inclusion_proofs_and_checkpoints_stay_consistent() {
    let (app, members) = village();
    let key = ledger_key(&app);
    let old = checkpoint::open_checkpoint(&checkpoint_note(&app), &app.ledger, &key).unwrap();
    assert_eq!(old.size, app.size());

    let receipt = app.accept(&members[1].key, &app.transfer_body(&members[1], &members[0].id, "1.00"));
    let index = receipt["index"].as_u64().unwrap();
    let new = checkpoint::open_checkpoint(&checkpoint_note(&app), &app.ledger, &key).unwrap();
    assert_eq!(new.size, index + 1);

    // The receipt's leaf, from the log, is in the signed tree.
    let (status, line) = log(&app, &format!("?start={index}&end={}", index + 1));
    assert_eq!(status, 200);
    let leaf_bytes = line.strip_suffix('\n').unwrap().as_bytes();
    let leaf = leaf::decode(leaf_bytes).unwrap();
    let OwnedContent::Command(envelope) = &leaf.content else { panic!("a command leaf") };
    let body = base64_decode(&envelope.body).unwrap();
    use sha2::Digest;
    assert_eq!(receipt["tx"], base64_encode(&sha2::Sha256::digest(&body)));
    let (_, proof) = app.get(&format!("/v1/proof/inclusion?index={index}&size={}", new.size));
    let hashes: Vec<Hash> = proof["hashes"].as_array().unwrap().iter().map(|h| hash_of(h.as_str().unwrap())).collect();
    assert!(merkle::verify_inclusion(&merkle::leaf_hash(leaf_bytes), index, new.size, &hashes, &new.root));

    // Every leaf is in the tree, by its own proof.
    let (_, all) = log(&app, "");
    for (at, line) in all.lines().enumerate() {
        let (_, proof) = app.get(&format!("/v1/proof/inclusion?index={at}&size={}", new.size));
        let hashes: Vec<Hash> =
            proof["hashes"].as_array().unwrap().iter().map(|h| hash_of(h.as_str().unwrap())).collect();
        assert!(merkle::verify_inclusion(&merkle::leaf_hash(line.as_bytes()), at as u64, new.size, &hashes, &new.root));
    }

    // The new checkpoint extends the old one.
    let (_, proof) = app.get(&format!("/v1/proof/consistency?from={}&to={}", old.size, new.size));
    let hashes: Vec<Hash> = proof["hashes"].as_array().unwrap().iter().map(|h| hash_of(h.as_str().unwrap())).collect();
    assert!(merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &hashes));
    assert!(!merkle::verify_consistency(old.size, new.size, &new.root, &old.root, &hashes));

    // Out-of-range requests are refused in the error shape.
    for path in [
        format!("/v1/proof/inclusion?index={}&size={}", new.size, new.size),
        format!("/v1/proof/inclusion?index=0&size={}", new.size + 1),
        format!("/v1/proof/consistency?from=0&to={}", new.size),
        format!("/v1/proof/consistency?from=3&to={}", new.size + 1),
        "/v1/proof/consistency?from=5&to=4".to_owned(),
        format!("/v1/log?start={}", new.size + 1),
        "/v1/log?start=5&end=4".to_owned(),
    ] {
        let (status, reply) = app.get(&path);
        assert_eq!((status, code(&reply)), (400, "out_of_range"), "{path}: {reply}");
    }
    let (status, reply) = app.get("/v1/proof/inclusion?index=x&size=1");
    assert_eq!((status, code(&reply)), (400, "invalid_query"));
}

#[test]
fn the_log_pages_and_a_restart_continues_the_same_tree() {
    let (mut app, members) = village();
    let key = ledger_key(&app);
    let (status, all) = log(&app, "?start=0");
    assert_eq!(status, 200);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len() as u64, app.size());
    assert!(lines[0].contains(r#""type":"genesis""#));
    let (_, page) = log(&app, "?start=3&end=5");
    assert_eq!(page.lines().collect::<Vec<_>>(), lines[3..5]);
    let (_, tail) = log(&app, &format!("?start={}&end=100000", lines.len() - 2));
    assert_eq!(tail.lines().count(), 2, "a page stops early at the end of the log");
    let (status, empty) = log(&app, &format!("?start={}", lines.len()));
    assert_eq!((status, empty.as_str()), (200, ""));

    let before = checkpoint::open_checkpoint(&checkpoint_note(&app), &app.ledger, &key).unwrap();
    app.restart();
    let same = checkpoint::open_checkpoint(&checkpoint_note(&app), &app.ledger, &key).unwrap();
    assert_eq!(same, before, "a restart signs nothing new");
    app.accept(&members[0].key, &app.transfer_body(&members[0], &members[2].id, "0.50"));
    let after = checkpoint::open_checkpoint(&checkpoint_note(&app), &app.ledger, &key).unwrap();
    let (_, proof) = app.get(&format!("/v1/proof/consistency?from={}&to={}", before.size, after.size));
    let hashes: Vec<Hash> = proof["hashes"].as_array().unwrap().iter().map(|h| hash_of(h.as_str().unwrap())).collect();
    assert!(merkle::verify_consistency(before.size, after.size, &before.root, &after.root, &hashes));
}

fn options() -> Options {
    Options { seed: [9; 32], ..Options::default() }
}

fn audit_db(path: &Path, options: Options) -> Result<Report, Failure> {
    let (report, auditor) = audit::run(&mut DatabaseSource::open(path)?, options, &|_, _| {})?;
    DatabaseSource::open(path)?.check_derived(&auditor, &report)?;
    Ok(report)
}

#[test]
fn an_honest_ledger_passes_from_every_source() {
    let (mut app, _) = village();
    let saved = checkpoint_note(&app);
    let size = app.size();
    app.accept(&app.operator, &app.issue_body(&Member::new(2).id, "1.00"));

    let (report, _) = audit::run(
        &mut audit::UrlSource::new(&app.base),
        Options { since: vec![saved.clone()], ..options() },
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(report.leaves, size + 1);
    assert_eq!(report.consistent_with, vec![size]);
    assert_eq!((report.members, report.pending), (3, 0));
    assert_eq!((report.issued, report.redeemed, report.circulation), (4100, 400, 3700));
    assert_eq!(report.ledger_key, base64_encode(&ledger_key(&app)));

    let strict = Options { strict: true, ledger_key: Some(ledger_key(&app)), ..options() };
    let export = app.folder.path().join("ledger.export");
    let mut file = std::fs::File::create(&export).unwrap();
    audit::export(&mut audit::UrlSource::new(&app.base), &mut file).unwrap();
    let (from_export, _) =
        audit::run(&mut audit::ExportSource::open(&export).unwrap(), strict.clone(), &|_, _| {}).unwrap();
    assert_eq!(from_export, Report { strict: true, consistent_with: Vec::new(), ..report.clone() });

    app.stop();
    let from_db = audit_db(&app.folder.path().join("covoit.db"), options()).unwrap();
    assert_eq!(from_db, Report { consistent_with: Vec::new(), ..report });

    let wrong_key = Options { ledger_key: Some([1; 32]), ..options() };
    let failure = audit_db(&app.folder.path().join("covoit.db"), wrong_key).unwrap_err();
    assert_eq!(failure.leaf, Some(0));
    write_python_fixtures(&export, app.folder.path());
}

/// Leaves an export and a tampered copy where `.ci/run` gives them to the independent
/// Python verifier (tests/verify_ledger.py).
fn write_python_fixtures(export: &Path, scratch: &Path) {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-verifier");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(export, folder.join("ledger.export")).unwrap();
    let text = std::fs::read_to_string(export).unwrap();
    let tampered = text.replacen(r#""amount":"-3.50""#, r#""amount":"-35.00""#, 1).replacen(
        r#""amount":"3.50""#,
        r#""amount":"35.00""#,
        1,
    );
    assert_ne!(tampered, text);
    std::fs::write(folder.join("tampered.export"), tampered).unwrap();
    let _ = scratch;
}

/// Changes a copy of the database as an insider could.
type Change = Box<dyn Fn(&Connection, &Context)>;

/// A tampering: SQL (or a rewrite of leaves) on a copy of the database.
struct Tamper {
    name: &'static str,
    change: Change,
    expected_leaf: Option<u64>,
    expected: &'static str,
}

/// What an insider on the server has: the ledger key and the old checkpoint.
struct Context {
    ledger_key: SigningKey,
    origin: String,
}

fn leaves_of(connection: &Connection) -> Vec<Vec<u8>> {
    let mut statement = connection.prepare("SELECT bytes FROM leaves ORDER BY leaf_index").unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

fn set_leaf(connection: &Connection, index: u64, bytes: &[u8]) {
    connection.execute("UPDATE leaves SET bytes = ?1 WHERE leaf_index = ?2", params![bytes, index as i64]).unwrap();
}

fn edit_leaf(connection: &Connection, index: u64, edit: impl Fn(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&leaves_of(connection)[index as usize]).unwrap();
    edit(&mut value);
    set_leaf(connection, index, &covoit::core::canonical::to_canonical_vec(&value));
}

/// Rebuilds the stored tree from the leaves and re-signs the checkpoint with `key`:
/// what an insider who also holds a key would do to cover a change.
fn recompute_and_resign(connection: &Connection, origin: &str, key: &SigningKey) {
    let leaves = leaves_of(connection);
    connection.execute("DELETE FROM merkle_hashes", []).unwrap();
    let mut frontier = Frontier::new();
    for leaf in &leaves {
        covoit::store::insert_nodes(connection, &frontier.push(merkle::leaf_hash(leaf))).unwrap();
    }
    let note = checkpoint::sign_checkpoint(origin, frontier.size(), &frontier.root(), key);
    connection
        .execute("UPDATE ledger SET checkpoint = ?1, size = ?2 WHERE id = 1", params![note, frontier.size() as i64])
        .unwrap();
}

/// The index of the first leaf whose bytes contain `needle`.
/// Deletes leaf `index` and renumbers the ones after it, as an insider covering a
/// removal would.
fn remove_leaf(connection: &Connection, index: u64) {
    let leaves = leaves_of(connection);
    connection.execute("DELETE FROM leaves WHERE leaf_index >= ?1", [index as i64]).unwrap();
    for (at, bytes) in leaves.iter().enumerate().skip(index as usize + 1) {
        let mut value: Value = serde_json::from_slice(bytes).unwrap();
        value["index"] = (at as u64 - 1).into();
        let bytes = covoit::core::canonical::to_canonical_vec(&value);
        connection
            .execute(
                "INSERT INTO leaves (leaf_index, bytes, kind, accepted_at) VALUES (?1, ?2, 'x', 'x')",
                params![at as i64 - 1, bytes],
            )
            .unwrap();
    }
}

fn find_leaf(connection: &Connection, needle: &str) -> u64 {
    leaves_of(connection).iter().position(|leaf| String::from_utf8_lossy(leaf).contains(needle)).unwrap() as u64
}

#[test]
fn every_tampering_is_found_and_named() {
    let (mut app, members) = village();
    let saved_checkpoint = checkpoint_note(&app);
    app.accept(&members[1].key, &app.transfer_body(&members[1], &members[0].id, "0.75"));
    app.stop();
    let original = app.folder.path().join("covoit.db");
    let context = Context {
        ledger_key: covoit::keys::read(&app.folder.path().join("keys/ledger.key")).unwrap(),
        origin: app.ledger.clone(),
    };
    let transfer_leaf = find_leaf(&Connection::open(&original).unwrap(), r#""amount":"-3.50""#);
    let bob = members[1].id.clone();
    let tampers = vec![
        Tamper {
            name: "change an amount in a leaf's postings",
            change: Box::new(|db, _| {
                let index = find_leaf(db, r#""amount":"-3.50""#);
                edit_leaf(db, index, |leaf| {
                    leaf["postings"][0]["amount"] = "-35.00".into();
                    leaf["postings"][1]["amount"] = "35.00".into();
                });
            }),
            expected_leaf: Some(transfer_leaf),
            expected: "recorded postings",
        },
        Tamper {
            name: "change the amount a member signed",
            change: Box::new(|db, _| {
                let index = find_leaf(db, r#""amount":"-3.50""#);
                edit_leaf(db, index, |leaf| {
                    let body = base64_decode(leaf["command"]["body"].as_str().unwrap()).unwrap();
                    let body = String::from_utf8(body).unwrap().replace(r#""amount":"3.50""#, r#""amount":"35.00""#);
                    leaf["command"]["body"] = base64_encode(body.as_bytes()).into();
                });
            }),
            expected_leaf: Some(transfer_leaf),
            expected: "bad_signature",
        },
        Tamper {
            name: "delete a leaf",
            change: Box::new(|db, _| {
                let index = find_leaf(db, r#""amount":"-3.50""#);
                db.execute("DELETE FROM leaves WHERE leaf_index = ?1", [index as i64]).unwrap();
            }),
            expected_leaf: Some(transfer_leaf),
            expected: "no leaf",
        },
        Tamper {
            name: "delete a leaf and renumber the rest",
            change: Box::new(|db, context| {
                remove_leaf(db, find_leaf(db, r#""amount":"-3.50""#));
                recompute_and_resign(db, &context.origin, &context.ledger_key);
            }),
            expected_leaf: None,
            expected: "seq_gap",
        },
        Tamper {
            name: "reorder two leaves",
            change: Box::new(|db, _| {
                let index = find_leaf(db, r#""amount":"-3.50""#);
                let leaves = leaves_of(db);
                set_leaf(db, index, &leaves[index as usize + 1]);
                set_leaf(db, index + 1, &leaves[index as usize]);
            }),
            expected_leaf: Some(transfer_leaf),
            expected: "says it is leaf",
        },
        Tamper {
            name: "reorder two leaves, fixing their indexes and the tree",
            change: Box::new(|db, context| {
                let index = find_leaf(db, r#""amount":"-3.50""#);
                let leaves = leaves_of(db);
                for (at, from) in [(index, index + 1), (index + 1, index)] {
                    let mut value: Value = serde_json::from_slice(&leaves[from as usize]).unwrap();
                    value["index"] = at.into();
                    set_leaf(db, at, &covoit::core::canonical::to_canonical_vec(&value));
                }
                recompute_and_resign(db, &context.origin, &context.ledger_key);
            }),
            expected_leaf: None,
            expected: "not consistent with the saved checkpoint",
        },
        Tamper {
            name: "swap a signature",
            change: Box::new(|db, _| {
                let index = find_leaf(db, r#""amount":"-3.50""#);
                let other = leaves_of(db)[index as usize + 1].clone();
                let other: Value = serde_json::from_slice(&other).unwrap();
                edit_leaf(db, index, |leaf| leaf["command"]["sig"] = other["command"]["sig"].clone());
            }),
            expected_leaf: Some(transfer_leaf),
            expected: "bad_signature",
        },
        Tamper {
            name: "change a stored balance",
            change: Box::new(move |db, _| {
                db.execute("UPDATE accounts SET balance = balance + 10000 WHERE account = ?1", [&bob]).unwrap();
                db.execute("UPDATE accounts SET balance = balance - 10000 WHERE account = 'reserve'", []).unwrap();
            }),
            expected_leaf: None,
            expected: "differs from the log's",
        },
        Tamper {
            name: "move a stored posting to another account",
            change: Box::new(|db, _| {
                db.execute(
                    "UPDATE postings SET account = (SELECT num FROM accounts WHERE account = 'reserve')
                      WHERE leaf_index = (SELECT MAX(leaf_index) FROM postings) AND amount > 0",
                    [],
                )
                .unwrap();
            }),
            expected_leaf: None,
            expected: "the postings table's entries for",
        },
        Tamper {
            name: "a stored posting names no account",
            change: Box::new(|db, _| {
                db.execute(
                    "UPDATE postings SET account = 1000000 WHERE leaf_index = (SELECT MAX(leaf_index) FROM postings)",
                    [],
                )
                .unwrap();
            }),
            expected_leaf: None,
            expected: "names no account",
        },
        Tamper {
            name: "insert an operator issue without the operator key",
            change: Box::new(|db, context| {
                let leaves = leaves_of(db);
                let index = leaves.len() as u64;
                let last = leaf::decode(leaves.last().unwrap()).unwrap();
                let genesis: Value = serde_json::from_slice(&leaves[0]).unwrap();
                let operator_seq: i64 = db
                    .query_row("SELECT next_seq FROM accounts WHERE account = 'operator'", [], |row| row.get(0))
                    .unwrap();
                let body = BodyWire {
                    ledger: genesis["event"]["ledger"].as_str().unwrap().into(),
                    account: "operator".into(),
                    seq: operator_seq.to_string(),
                    not_after: "2030-01-01T00:00:00Z".into(),
                    by: None,
                    command: CommandWire::Issue { to: Member::new(3).id, amount: "500.00".into(), memo: None },
                };
                let forged = sign_body(&SigningKey::from_bytes(&[0x66; 32]), &body);
                let postings = [
                    leaf::Posting { account: covoit::core::ids::AccountId::reserve(), amount_minor: -50_000 },
                    leaf::Posting {
                        account: covoit::core::ids::AccountId::parse(&Member::new(3).id).unwrap(),
                        amount_minor: 50_000,
                    },
                ];
                let at = Timestamp::from_unix_ms(last.accepted_at.unix_ms() + 1000);
                let bytes = leaf::encode(index, at, Content::Command(&forged), &postings);
                db.execute(
                    "INSERT INTO leaves (leaf_index, bytes, kind, account, seq, tx, accepted_at) VALUES (?1, ?2, 'issue', 'operator', ?3, x'00', ?4)",
                    params![index as i64, bytes, operator_seq, at.to_string()],
                )
                .unwrap();
                recompute_and_resign(db, &context.origin, &context.ledger_key);
            }),
            expected_leaf: None,
            expected: "wrong_key",
        },
        Tamper {
            name: "the operator forges a member's payment, signed with its own key as if at the desk",
            change: Box::new(|db, context| {
                let leaves = leaves_of(db);
                let index = leaves.len() as u64;
                let last = leaf::decode(leaves.last().unwrap()).unwrap();
                let (bob, carol) = (Member::new(2).id, Member::new(3).id);
                let bob_seq: i64 =
                    db.query_row("SELECT next_seq FROM accounts WHERE account = ?1", [&bob], |row| row.get(0)).unwrap();
                let body = BodyWire {
                    ledger: context.origin.clone(),
                    account: bob.clone(),
                    seq: bob_seq.to_string(),
                    not_after: "2030-01-01T00:00:00Z".into(),
                    by: Some("operator".into()),
                    command: CommandWire::Transfer { to: carol.clone(), amount: "5.00".into(), memo: None },
                };
                let forged = sign_body(&SigningKey::from_bytes(&[0x0b; 32]), &body);
                let postings = [
                    leaf::Posting { account: covoit::core::ids::AccountId::parse(&bob).unwrap(), amount_minor: -500 },
                    leaf::Posting { account: covoit::core::ids::AccountId::parse(&carol).unwrap(), amount_minor: 500 },
                ];
                let at = Timestamp::from_unix_ms(last.accepted_at.unix_ms() + 1000);
                let bytes = leaf::encode(index, at, Content::Command(&forged), &postings);
                db.execute(
                    "INSERT INTO leaves (leaf_index, bytes, kind, account, seq, tx, accepted_at) VALUES (?1, ?2, 'transfer', ?3, ?4, x'00', ?5)",
                    params![index as i64, bytes, bob, bob_seq, at.to_string()],
                )
                .unwrap();
                recompute_and_resign(db, &context.origin, &context.ledger_key);
            }),
            expected_leaf: None,
            expected: "not_custodial",
        },
        Tamper {
            name: "rewrite history and re-sign the checkpoint with another key",
            change: Box::new(|db, context| {
                let index = find_leaf(db, r#""amount":"-3.50""#);
                db.execute("DELETE FROM leaves WHERE leaf_index >= ?1", [index as i64]).unwrap();
                recompute_and_resign(db, &context.origin, &SigningKey::from_bytes(&[0x99; 32]));
            }),
            expected_leaf: None,
            expected: "checkpoint is refused",
        },
    ];
    for tamper in &tampers {
        let copy = app.folder.path().join("tampered.db");
        let derived_copy = app.folder.path().join("tampered-derived.db");
        let _ = std::fs::remove_file(&copy);
        std::fs::copy(&original, &copy).unwrap();
        std::fs::copy(app.folder.path().join("covoit-derived.db"), &derived_copy).unwrap();
        let connection = Connection::open(&copy).unwrap();
        // Balances and seqs live in the derived tables, beside the log.
        connection.execute("ATTACH DATABASE ?1 AS derived", [derived_copy.to_str().unwrap()]).unwrap();
        (tamper.change)(&connection, &context);
        drop(connection);
        let since = Options { since: vec![saved_checkpoint.clone()], ..options() };
        let failure = audit_db(&copy, since).expect_err(tamper.name);
        assert!(failure.to_string().contains(tamper.expected), "{}: found {failure}", tamper.name);
        if let Some(leaf) = tamper.expected_leaf {
            assert_eq!(failure.leaf, Some(leaf), "{}: {failure}", tamper.name);
        }
    }
    assert!(audit_db(&original, options()).is_ok(), "the untouched original passes");
}

#[test]
fn covoit_audit_exits_zero_on_a_good_ledger_and_one_on_a_bad_one() {
    let (mut app, _) = village();
    app.stop();
    let binary = env!("CARGO_BIN_EXE_covoit");
    let db = app.folder.path().join("covoit.db");
    let output = std::process::Command::new(binary).args(["audit", "--db"]).arg(&db).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("audit passed"), "{stdout}");
    let connection = Connection::open(&db).unwrap();
    let index = find_leaf(&connection, r#""amount":"-3.50""#);
    edit_leaf(&connection, index, |leaf| leaf["accepted_at"] = "2000-01-01T00:00:00.000Z".into());
    drop(connection);
    let output = std::process::Command::new(binary).args(["audit", "--db"]).arg(&db).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("AUDIT FAILED: leaf {index}:")), "{stdout}");
}

#[test]
fn a_server_that_withholds_a_due_settlement_is_caught() {
    use covoit::core::protocol::{OfferWire, PlaceWire, RequestWire};
    let mut app = TestApp::spawn();
    let (driver, passenger) = (Member::new(41), Member::new(42));
    app.join(&driver, "Driver");
    app.join(&passenger, "Passenger");
    app.issue(&passenger, "5.00");
    let id = |n: u32| format!("00000000-0000-4000-9000-{n:012x}");
    let start = covoit::core::time::Timestamp::parse(crate::support::START).unwrap();
    let at = |minutes: i64| start.plus_ms(minutes * 60_000).to_string();
    let offer = CommandWire::Offer(Box::new(OfferWire {
        offer: id(1),
        origin: PlaceWire::at("45.248", "1.327"),
        destination: PlaceWire::at("45.264", "1.409"),
        seats: 2,
        detour_km: None,
        departure: Some(at(60)),
        weekdays: None,
        time: None,
        until: None,
    }));
    app.accept(&driver.key, &app.body(&driver.id, offer, false));
    let request = CommandWire::Request(Box::new(RequestWire {
        request: id(2),
        pickup: PlaceWire::at("45.248", "1.328"),
        dropoff: PlaceWire::at("45.264", "1.408"),
        earliest: at(55),
        latest: at(90),
        seats: 1,
    }));
    app.accept(&passenger.key, &app.body(&passenger.id, request, false));
    let book = CommandWire::Book { booking: id(3), offer: id(1), request: id(2), date: None };
    app.accept(&passenger.key, &app.body(&passenger.id, book, false));
    app.accept(&driver.key, &app.body(&driver.id, CommandWire::Accept { booking: id(3) }, false));
    app.clock.advance(70 * 60_000);
    app.accept(&driver.key, &app.body(&driver.id, CommandWire::Complete { booking: id(3) }, false));
    app.clock.advance(24 * 3_600_000);
    app.tick();
    app.accept(&passenger.key, &app.transfer_body(&passenger, &driver.id, "1.00"));
    app.stop();
    let original = app.folder.path().join("covoit.db");
    assert!(audit_db(&original, options()).is_ok());

    // An insider removes the settlement (the driver is never paid) and covers it up.
    let copy = app.folder.path().join("withheld.db");
    std::fs::copy(&original, &copy).unwrap();
    let db = Connection::open(&copy).unwrap();
    let event = find_leaf(&db, "ride.settle");
    remove_leaf(&db, event);
    let key = covoit::keys::read(&app.folder.path().join("keys/ledger.key")).unwrap();
    recompute_and_resign(&db, &app.ledger, &key);
    drop(db);
    let failure = audit_db(&copy, options()).unwrap_err();
    assert!(failure.to_string().contains("withheld"), "{failure}");
    assert_eq!(failure.leaf, Some(event));
}
