//! Backups and the restore drill: `covoit backup` copies the live database while
//! payments flow; each copy, restored into a fresh folder with the ledger key, passes
//! the audit, its signed checkpoint is one the live log still extends, and a service
//! started on it serves what the live service served at that size, then carries on.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use covoit::audit::{self, DatabaseSource, Options, Report};
use covoit::core::checkpoint::{self, Checkpoint};
use covoit::core::merkle::{self, Hash};
use covoit::core::protocol::{base64_decode, sign_body};
use covoit::service::Service;
use covoit::store::backup::{self, BackupError, BackupReport};
use serde_json::Value;

use crate::support::{Member, TestApp, config_for};

/// Members paying one another; the first `PAYERS` each pay from their own thread.
const MEMBERS: usize = 6;
const PAYERS: usize = 4;
/// Backups taken while the payers pay.
const BACKUPS: usize = 4;
/// Payments accepted between two backups (and after the last), so that each backup
/// is taken with writes before and after it.
const PAYMENTS_BETWEEN: u64 = 50;
/// A payer stops after this many payments even if not told to (the test then fails
/// on a timeout rather than running on).
const PAYMENTS_PER_PAYER_MAX: u64 = 2_000;
const WAIT_MAX: Duration = Duration::from_secs(120);

#[test]
fn backups_taken_under_load_restore_pass_the_audit_and_serve_the_same_ledger() {
    let app = TestApp::spawn();
    let members: Vec<Member> = (0..MEMBERS).map(|seat| Member::new(400 + seat as u64)).collect();
    for (seat, member) in members.iter().enumerate() {
        app.join(member, &format!("Member {seat}"));
        app.issue(member, "500.00");
    }
    let live_db = app.folder.path().join("covoit.db");
    let backups = tempfile::tempdir().unwrap();

    // Payers pay in their own threads while this one takes backups of the live file.
    let stop = AtomicBool::new(false);
    let accepted = AtomicU64::new(0);
    let taken: Vec<(u64, BackupReport, u64)> = std::thread::scope(|scope| {
        let payers: Vec<_> = (0..PAYERS)
            .map(|seat| {
                let (app, members, stop, accepted) = (&app, &members, &stop, &accepted);
                scope.spawn(move || pay_until_stopped(app, members, seat, stop, accepted))
            })
            .collect();
        let mut taken = Vec::new();
        for round in 0..=BACKUPS {
            wait_for_payments(&accepted, PAYMENTS_BETWEEN * (round as u64 + 1), &payers);
            if round == BACKUPS {
                break;
            }
            let before = app.size();
            let out = backups.path().join(format!("covoit-{round}.db"));
            let report = backup::backup(&live_db, &out).unwrap_or_else(|error| panic!("backup {round}: {error}"));
            let after = app.size();
            taken.push((before, report, after));
        }
        stop.store(true, Ordering::SeqCst);
        for payer in payers {
            payer.join().expect("a payer failed");
        }
        taken
    });

    let live_key = ledger_key(&app);
    let live_note = text(&app.base, "/v1/checkpoint");
    let live = checkpoint::open_checkpoint(&live_note, &app.ledger, &live_key).unwrap();
    assert_eq!(live.size, app.size());
    let accepted = accepted.load(Ordering::SeqCst);
    assert!(accepted >= PAYMENTS_BETWEEN * (BACKUPS as u64 + 1));

    let mut previous = 0;
    for (round, (before, report, after)) in taken.iter().enumerate() {
        // Each backup is a snapshot of the live log at one commit during the load.
        assert!(
            *before <= report.leaves && report.leaves <= *after,
            "backup {round} holds {} leaves, the live log had {before} before and {after} after",
            report.leaves
        );
        assert!(report.leaves > previous, "backup {round} is not newer than the one before it");
        previous = report.leaves;
        assert_eq!(report.checkpoint.size, report.leaves);
        assert_eq!(report.ledger, app.ledger);
        let opened = checkpoint::open_checkpoint(&report.note, &app.ledger, &live_key).unwrap();
        assert_eq!(opened, report.checkpoint);
        assert!(report.to_string().contains("keys/ledger.key"), "the output names the key to keep:\n{report}");
        // The live log extends the backup's: a consistency proof from the live service,
        // checked with the crate's own verifier against both signed roots...
        assert_consistent(&app.base, &report.checkpoint, &live);
    }
    assert!(live.size > previous, "payments went on after the last backup");
    assert!(
        taken.iter().any(|(before, _, after)| after > before),
        "no payment was committed while a backup was being taken: this drill did not test copying under load"
    );
    // ...and the auditor, given the backup's checkpoint as an older one, agrees.
    let notes: Vec<String> = taken.iter().map(|(_, report, _)| report.note.clone()).collect();
    let (from_live, _) = audit::run(
        &mut audit::UrlSource::new(&app.base),
        Options { since: notes, ledger_key: Some(live_key), ..options() },
        &|_, _| {},
    )
    .expect("the live ledger passes the audit");
    let sizes: Vec<u64> = taken.iter().map(|(_, report, _)| report.leaves).collect();
    assert_eq!(from_live.consistent_with, sizes);

    // Nothing but the backups is left in their folder: no partial copies, no journals.
    let mut names = file_names(backups.path());
    names.sort();
    let expected: Vec<String> = (0..BACKUPS).map(|round| format!("covoit-{round}.db")).collect();
    assert_eq!(names, expected);

    // The drill: every backup restored into a fresh folder with a copy of the key.
    for (_, report, _) in &taken {
        let restored = restore(&report.path, &app.folder.path().join("keys/ledger.key"));
        let db = restored.path().join("covoit.db");
        let audited = audit_db(&db, live_key).unwrap_or_else(|failure| panic!("the restored copy fails: {failure}"));
        assert_eq!(audited.checkpoint, report.checkpoint);
        assert_eq!(audited.leaves, report.leaves);
        assert_eq!(audited.ledger_key, covoit::core::protocol::base64_encode(&live_key));
    }

    // A service on the last backup serves the ledger as it was at that size.
    let (_, last, _) = taken.last().unwrap();
    let restored = restore(&last.path, &app.folder.path().join("keys/ledger.key"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = config_for(restored.path(), &app.operator, app.clock.clone());
    let service = runtime.block_on(Service::start(config)).expect("a service starts on the restored copy");
    let base = format!("http://{}", service.local_addr());
    assert_eq!(text(&base, "/v1/checkpoint"), last.note, "the restored service signs nothing new at start");
    assert_eq!(get(&base, "/v1/ledger").1["size"], last.leaves);

    let accounts: Vec<String> =
        members.iter().map(|member| member.id.clone()).chain(["reserve".to_owned(), "operator".to_owned()]).collect();
    let mut moved = false;
    for account in &accounts {
        let then = balance_at(&app.base, account, last.leaves);
        let (status, served) = get(&base, &format!("/v1/accounts/{account}"));
        assert_eq!(status, 200, "{served}");
        assert_eq!(served["balance"], then, "{account}'s balance at leaf {}", last.leaves);
        // The whole history up to the backup, line by line, with its running balances.
        let history =
            |base: &str, query: &str| get(base, &format!("/v1/accounts/{account}/postings?limit=200{query}")).1;
        assert_eq!(history(&base, ""), history(&app.base, &format!("&before={}", last.leaves)));
        moved |= then != app.balance(account);
    }
    assert!(moved, "the live balances moved after the backup, so this comparison means something");

    // New commands append after the backup's last leaf, and the tree grows from its root.
    let payer = &members[0];
    let (_, account) = get(&base, &format!("/v1/accounts/{}", payer.id));
    let seq = account["next_seq"].as_str().unwrap().to_owned();
    let body = covoit::core::protocol::BodyWire { seq, ..app.transfer_body(payer, &members[1].id, "1.00") };
    let (status, receipt) = post(&base, &serde_json::to_vec(&sign_body(&payer.key, &body)).unwrap());
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["index"], last.leaves);
    let grown = checkpoint::open_checkpoint(&text(&base, "/v1/checkpoint"), &app.ledger, &live_key).unwrap();
    assert_eq!(grown.size, last.leaves + 1);
    assert_consistent(&base, &last.checkpoint, &grown);
    runtime.block_on(service.stop());
}

#[test]
fn a_backup_never_replaces_a_file_and_refusals_leave_nothing_behind() {
    let app = TestApp::spawn();
    let alice = Member::new(1);
    app.join(&alice, "Alice");
    let live_db = app.folder.path().join("covoit.db");
    let folder = tempfile::tempdir().unwrap();
    let existing = folder.path().join("covoit-backup.db");
    std::fs::write(&existing, "yesterday's backup").unwrap();

    let refused = backup::backup(&live_db, &existing).unwrap_err();
    assert!(matches!(&refused, BackupError::Exists(path) if path == &existing), "{refused:?}");
    assert!(refused.to_string().contains("already exists"), "{refused}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "yesterday's backup");

    // No database there, or a file that is not a covoit database: refused in a sentence.
    let missing = backup::backup(&folder.path().join("missing.db"), &folder.path().join("a.db")).unwrap_err();
    assert!(matches!(missing, BackupError::NoDatabase(_)), "{missing:?}");
    assert!(missing.to_string().starts_with("there is no database at"), "{missing}");
    let not_a_db = folder.path().join("notes.txt");
    std::fs::write(&not_a_db, "not SQLite at all, but long enough to be looked at as a database file").unwrap();
    let wrong = backup::backup(&not_a_db, &folder.path().join("b.db")).unwrap_err();
    assert!(matches!(wrong, BackupError::NotLedger { .. }), "{wrong:?}");
    let nowhere = backup::backup(&live_db, &folder.path().join("no/such/folder/c.db")).unwrap_err();
    assert!(matches!(nowhere, BackupError::NoFolder(_)), "{nowhere:?}");
    let mut names = file_names(folder.path());
    names.sort();
    assert_eq!(names, ["covoit-backup.db", "notes.txt"], "refusals leave no file behind");

    // The command: a new name works and names the key to keep; the same name again is
    // refused with the sentence, exit status 2, and the first copy is untouched.
    let binary = env!("CARGO_BIN_EXE_covoit");
    let run = |out: &Path| {
        std::process::Command::new(binary)
            .args(["backup", "--db"])
            .arg(&live_db)
            .arg("--out")
            .arg(out)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let fresh = folder.path().join("covoit-2026-11-25.db");
    let output = run(&fresh);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let size = app.size();
    assert!(stdout.contains("keys/ledger.key") && stdout.contains(&format!("tree size       {size}\n")), "{stdout}");
    let copied = std::fs::read(&fresh).unwrap();
    let output = run(&fresh);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already exists; a backup never replaces a file"), "{stderr}");
    assert_eq!(std::fs::read(&fresh).unwrap(), copied);
    // The copy is a single file that the auditor reads as it is.
    let report = audit_db(&fresh, ledger_key(&app)).unwrap();
    assert_eq!(report.leaves, size);
}

/// One payer's thread: pays the others small amounts, round robin, until told to stop.
fn pay_until_stopped(app: &TestApp, members: &[Member], seat: usize, stop: &AtomicBool, accepted: &AtomicU64) {
    let payer = &members[seat];
    for turn in 0..PAYMENTS_PER_PAYER_MAX {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let payee = &members[(seat + 1 + turn as usize % (members.len() - 1)) % members.len()];
        let amount = format!("0.{:02}", 1 + turn % 40);
        app.accept(&payer.key, &app.transfer_body(payer, &payee.id, &amount));
        accepted.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits until `count` payments were accepted in all; fails if a payer stopped early.
fn wait_for_payments(accepted: &AtomicU64, count: u64, payers: &[std::thread::ScopedJoinHandle<'_, ()>]) {
    let started = Instant::now();
    while accepted.load(Ordering::SeqCst) < count {
        assert!(!payers.iter().any(|payer| payer.is_finished()), "a payer stopped (see its panic above)");
        assert!(started.elapsed() < WAIT_MAX, "the payments did not reach {count}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Copies a backup into a fresh folder as covoit.db, with a copy of the ledger key.
fn restore(backup: &Path, ledger_key: &Path) -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(backup, folder.path().join("covoit.db")).unwrap();
    std::fs::create_dir(folder.path().join("keys")).unwrap();
    std::fs::copy(ledger_key, folder.path().join("keys/ledger.key")).unwrap();
    folder
}

/// What `covoit audit --db` runs: the replay, then the database's own tables.
fn audit_db(path: &Path, ledger_key: [u8; 32]) -> Result<Report, audit::Failure> {
    let options = Options { ledger_key: Some(ledger_key), ..options() };
    let (report, auditor) = audit::run(&mut DatabaseSource::open(path)?, options, &|_, _| {})?;
    DatabaseSource::open(path)?.check_derived(&auditor, &report)?;
    Ok(report)
}

fn options() -> Options {
    Options { seed: [5; 32], ..Options::default() }
}

/// The service at `base` proves that the tree of `new` extends the tree of `old`.
fn assert_consistent(base: &str, old: &Checkpoint, new: &Checkpoint) {
    let (status, proof) = get(base, &format!("/v1/proof/consistency?from={}&to={}", old.size, new.size));
    assert_eq!(status, 200, "{proof}");
    let hashes: Vec<Hash> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hash| base64_decode(hash.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    assert!(
        merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &hashes),
        "the tree of size {} does not extend the backup's of size {}",
        new.size,
        old.size
    );
    let mut forged = old.root;
    forged[0] ^= 1;
    assert!(!merkle::verify_consistency(old.size, new.size, &forged, &new.root, &hashes));
}

/// An account's balance just after leaf `size - 1`, from the live service's history.
fn balance_at(base: &str, account: &str, size: u64) -> Value {
    let (status, page) = get(base, &format!("/v1/accounts/{account}/postings?before={size}&limit=1"));
    assert_eq!(status, 200, "{page}");
    match page["postings"].as_array().unwrap().first() {
        Some(line) => line["balance_after"].clone(),
        None => Value::from("0.00"),
    }
}

fn ledger_key(app: &TestApp) -> [u8; 32] {
    base64_decode(app.get("/v1/ledger").1["ledger_key"].as_str().unwrap()).unwrap().try_into().unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build(),
    )
}

fn text(base: &str, path: &str) -> String {
    let mut response = agent().get(&format!("{base}{path}")).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.body_mut().read_to_string().unwrap()
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let mut response = agent().get(&format!("{base}{path}")).call().unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

fn post(base: &str, bytes: &[u8]) -> (u16, Value) {
    let mut response =
        agent().post(&format!("{base}/v1/commands")).header("content-type", "application/json").send(bytes).unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

fn file_names(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect()
}
