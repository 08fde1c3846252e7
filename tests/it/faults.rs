//! Storage faults: the database's disk full, or its file system read-only. The service
//! answers 503 `storage_unavailable`, keeps nothing of what it refused, keeps serving
//! reads, and takes commands again once the fault clears; the ledger still audits.
//!
//! The faults are real: the database lives on a small tmpfs mounted for the test,
//! which needs root (as CI has); elsewhere the tests say so and do nothing.

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
        eprintln!("skipped: mounting a tmpfs needs root");
        return None;
    };
    let app = TestApp::spawn_with(folder, |_| {});
    let (alice, bob) = (Member::new(71), Member::new(72));
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.issue(&alice, "1000.00");
    Some((tmpfs, app, alice, bob))
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
