//! Storage faults: the database's disk full, or its file system read-only. The service
//! answers 503 `storage_unavailable`, keeps nothing of what it refused, keeps serving
//! reads, and takes commands again once the fault clears; the ledger still audits.
//!
//! The faults are real: the full disk is a small tmpfs mounted for the test, and the
//! read-only database has its files made immutable under the running service. Both
//! need root (as CI has); elsewhere the tests say so and do nothing, unless
//! `COVOIT_REQUIRE_FAULTS` is set (`.ci/run` sets it), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use covoit::audit::{self, DatabaseSource, Options};
use serde_json::Value;

use crate::support::{Member, TestApp, code};

/// A tmpfs mounted on a temporary folder, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(folder: &Path, size: &str) -> Option<Tmpfs> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(folder)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| Tmpfs { path: folder.to_owned() })
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.path).status().unwrap();
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The app on a fresh tmpfs, with two funded members; `None` when mounting is not allowed.
fn app_on_tmpfs(size: &str) -> Option<(Tmpfs, TestApp, Member, Member)> {
    let folder = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::mount(folder.path(), size) else {
        skipped("mounting a tmpfs needs root");
        return None;
    };
    let app = TestApp::spawn_with(folder, |_| {});
    let (alice, bob) = (Member::new(71), Member::new(72));
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.issue(&alice, "1000.00");
    Some((tmpfs, app, alice, bob))
}

/// A fault this machine cannot make: the test says so and passes, unless
/// `COVOIT_REQUIRE_FAULTS` is set (as `.ci/run` does), where it fails instead.
fn skipped(why: &str) {
    assert!(std::env::var_os("COVOIT_REQUIRE_FAULTS").is_none(), "COVOIT_REQUIRE_FAULTS is set, but {why}");
    eprintln!("skipped: {why}");
}

fn audit_passes(app: &TestApp) {
    let path = app.folder.path().join("covoit.db");
    let options = Options { seed: [9; 32], ..Options::default() };
    let (report, auditor) = audit::run(&mut DatabaseSource::open(&path).unwrap(), options, &|_, _| {})
        .unwrap_or_else(|failure| panic!("the audit fails: {failure}"));
    DatabaseSource::open(&path).unwrap().check_derived(&auditor, &report).unwrap();
    assert_eq!(report.leaves, app.size());
}

/// Posts payments of 0.01 until one is refused; returns the refused envelope's reply and
/// the envelope, to post again later.
fn pay_until_refused(app: &TestApp, from: &Member, to: &Member) -> ((u16, Value), covoit::core::protocol::Envelope) {
    for _ in 0..20_000 {
        let envelope = covoit::core::protocol::sign_body(&from.key, &app.transfer_body(from, &to.id, "0.01"));
        let (status, reply) = app.post(&envelope);
        if status != 200 {
            return ((status, reply), envelope);
        }
    }
    panic!("the disk never filled");
}

#[test]
fn a_full_disk_gives_503_keeps_nothing_refused_and_recovers_when_space_returns() {
    let Some((tmpfs, app, alice, bob)) = app_on_tmpfs("3m") else { return };
    // Fill what is left of the disk.
    let filler = tmpfs.path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0x55u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &block).is_ok() {}
    drop(file);

    let ((status, reply), refused) = pay_until_refused(&app, &alice, &bob);
    assert_eq!((status, code(&reply)), (503, "storage_unavailable"), "{reply}");
    let (size, balance) = (app.size(), app.balance(&alice.id));
    assert_eq!(app.post(&refused).0, 503, "still full: still refused");
    assert_eq!((app.size(), app.balance(&alice.id)), (size, balance), "a refusal keeps nothing");
    assert_eq!(app.get(&format!("/v1/accounts/{}", alice.id)).0, 200, "reads go on");

    std::fs::remove_file(&filler).unwrap();
    let (status, receipt) = app.post(&refused);
    assert_eq!(status, 200, "space is back: the same command is taken: {receipt}");
    assert_eq!(receipt["index"].as_u64(), Some(size));
    assert_eq!(app.size(), size + 1);
    audit_passes(&app);
}

/// Linux refuses to remount a file system read-only while a process holds a file open
/// for writing (EBUSY), so a running service never sees its database turn read-only;
/// it can be read-only when the service starts. Then the service refuses to start,
/// saying why, and starts normally once the file system is writable again.
#[test]
fn a_read_only_file_system_is_refused_at_start_and_the_ledger_is_intact_after() {
    let Some((tmpfs, mut app, alice, bob)) = app_on_tmpfs("16m") else { return };
    app.accept(&alice.key, &app.transfer_body(&alice, &bob.id, "2.50"));
    let size = app.size();
    app.stop();
    tmpfs.remount("ro");
    let config = crate::support::config_for(app.folder.path(), &app.operator, app.clock.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = runtime.block_on(covoit::service::Service::start(config));
    let error = refused.err().expect("the service does not start on a read-only database").to_string();
    assert!(
        error.contains("cannot be written") && error.contains("Read-only file system"),
        "the reason is given: {error}"
    );

    tmpfs.remount("rw");
    app.restart();
    assert_eq!(app.size(), size, "nothing was lost or added");
    assert_eq!(app.balance(&alice.id), "997.50");
    app.accept(&alice.key, &app.transfer_body(&alice, &bob.id, "1.00"));
    audit_passes(&app);
}

/// Files made immutable (`chattr +i`) for as long as it lives, and writable again on
/// drop (an immutable file cannot even be deleted).
struct Immutable {
    files: Vec<PathBuf>,
}

impl Immutable {
    /// `None` when the file system or the user cannot set the flag.
    fn set(files: Vec<PathBuf>) -> Option<Immutable> {
        let set = Command::new("chattr").arg("+i").args(&files).status().is_ok_and(|status| status.success());
        set.then_some(Immutable { files })
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.files).status();
    }
}

/// The database made read-only under the running service. Linux will not remount a file
/// system read-only while the service holds its files open for writing, so the files
/// themselves are made immutable: every write to them, through descriptors already open
/// too, then fails (EPERM), as on a disk that turned read-only.
#[test]
fn a_database_made_read_only_while_running_gives_503_and_recovers_once_writable() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), |_| {});
    let (alice, bob) = (Member::new(73), Member::new(74));
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.issue(&alice, "1000.00");
    app.accept(&alice.key, &app.transfer_body(&alice, &bob.id, "2.50"));
    let database = app.folder.path().join("covoit.db");
    let files = ["", "-wal"].map(|suffix| PathBuf::from(format!("{}{suffix}", database.display())));
    assert!(files.iter().all(|file| file.exists()), "the database and its write-ahead log");
    let Some(read_only) = Immutable::set(files.to_vec()) else {
        return skipped("making a file immutable needs root on a file system with chattr");
    };

    let (size, balance) = (app.size(), app.balance(&alice.id));
    let refused = covoit::core::protocol::sign_body(&alice.key, &app.transfer_body(&alice, &bob.id, "1.00"));
    let (status, reply) = app.post(&refused);
    assert_eq!((status, code(&reply)), (503, "storage_unavailable"), "{reply}");
    assert_eq!(app.post(&refused).0, 503, "still read-only: still refused");
    assert_eq!((app.size(), app.balance(&alice.id)), (size, balance), "a refusal keeps nothing");
    assert_eq!(app.get(&format!("/v1/accounts/{}", alice.id)).0, 200, "reads go on");

    drop(read_only);
    let (status, receipt) = app.post(&refused);
    assert_eq!(status, 200, "writable again: the same command is taken: {receipt}");
    assert_eq!(receipt["index"].as_u64(), Some(size));
    assert_eq!(app.balance(&alice.id), "996.50");
    app.accept(&alice.key, &app.transfer_body(&alice, &bob.id, "1.00"));
    assert_eq!(app.size(), size + 2);
    audit_passes(&app);
}
