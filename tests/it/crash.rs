//! Crash safety: the real binary under a concurrent payment load, killed with SIGKILL
//! at random moments and restarted, again and again. After every restart the audit
//! passes, every command that got a 2xx is in the log, none that got a refusal is, and
//! the log extends the last checkpoint seen before the kill and the first one served
//! after the restart.
//!
//! The load mixes in payments sure to be refused (more than the payer holds), so that
//! refusals are there to check in every cycle. `COVOIT_CRASH_CYCLES` sets the number of
//! kills (30 by default; the long run in docs/reliability.md uses more);
//! `COVOIT_CRASH_SEED` replays the kill times of an earlier run (each run prints its own).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use covoit::audit::{self, DatabaseSource, Options};
use covoit::client::Client;
use covoit::core::body::{BodyWire, CommandWire};
use covoit::core::protocol::{base64_decode, base64_encode, sign_body};
use covoit::core::time::Timestamp;
use ed25519_dalek::SigningKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

const PAYERS: usize = 8;
const WORKERS: usize = 4;
/// Every this many payments, a worker posts one for more than its payer holds.
const OVERDRAWN_EVERY: usize = 7;

/// What one posted command came to.
#[derive(Debug, Clone)]
enum Outcome {
    /// 2xx: the receipt's index and tx.
    Accepted { index: u64, tx: String },
    /// A refusal: its status and the tx of the body that was refused.
    Refused { status: u16, tx: String },
}

struct Server {
    child: Child,
    base: String,
}

fn start(folder: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_covoit"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--rate-per-client", "0"])
        .arg("--db")
        .arg(folder.join("covoit.db"))
        .arg("--keys")
        .arg(folder.join("keys"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the covoit binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new(&base);
    let started = Instant::now();
    while !client.get("/healthz").is_ok_and(|reply| reply.status == 200) {
        assert!(started.elapsed() < Duration::from_secs(30), "the service did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, base }
}

fn not_after() -> String {
    Timestamp::from_unix_ms(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 3_600_000,
    )
    .to_string()
}

fn tx_of(body: &BodyWire, key: &SigningKey) -> (Vec<u8>, String) {
    let envelope = sign_body(key, body);
    let bytes = base64_decode(&envelope.body).unwrap();
    (serde_json::to_vec(&envelope).unwrap(), base64_encode(&Sha256::digest(&bytes)))
}

/// Posts one command; `None` when no answer came (the server died under it).
fn post(agent: &ureq::Agent, base: &str, key: &SigningKey, body: &BodyWire) -> Option<Outcome> {
    let (envelope, tx) = tx_of(body, key);
    let mut response = agent
        .post(&format!("{base}/v1/commands"))
        .header("content-type", "application/json")
        .send(&envelope[..])
        .ok()?;
    let status = response.status().as_u16();
    let reply: Value = serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
    if status == 200 {
        assert_eq!(reply["tx"].as_str(), Some(tx.as_str()), "the receipt names the command posted");
        Some(Outcome::Accepted { index: reply["index"].as_u64().unwrap(), tx })
    } else {
        assert!(status < 500 || status == 503, "a {status} for a well-formed payment: {reply}");
        Some(Outcome::Refused { status, tx })
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build(),
    )
}

fn setup_body(ledger: &str, account: &str, seq: u64, command: CommandWire) -> BodyWire {
    BodyWire {
        ledger: ledger.to_owned(),
        account: account.to_owned(),
        seq: seq.to_string(),
        not_after: not_after(),
        by: None,
        command,
    }
}

/// Every leaf of the log, as (tx of its command, if any) by index.
fn log_txs(base: &str) -> Vec<Option<String>> {
    let client = Client::new(base);
    let mut txs = Vec::new();
    loop {
        let reply = client.get(&format!("/v1/log?start={}", txs.len())).expect("the log");
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.body.trim().is_empty() {
            break;
        }
        for line in reply.body.lines() {
            let leaf: Value = serde_json::from_str(line).unwrap();
            let tx = leaf["command"]["body"]
                .as_str()
                .map(|body| base64_encode(&Sha256::digest(base64_decode(body).unwrap())));
            txs.push(tx);
        }
    }
    txs
}

#[test]
fn killed_at_random_moments_the_ledger_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("COVOIT_CRASH_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(30);
    let folder = tempfile::tempdir().unwrap();
    let mut server = start(folder.path());
    let operator = covoit::keys::read(&folder.path().join("keys/operator-demo.key")).unwrap();
    let client = Client::new(&server.base);
    let ledger = client.ledger_id().unwrap();

    // Payers, approved and funded by the operator.
    let setup = agent();
    let payers: Vec<(String, SigningKey)> = (0..PAYERS)
        .map(|n| {
            let mut seed = [0x33u8; 32];
            seed[0] = n as u8;
            (covoit::core::ids::AccountId::new_member().to_string(), SigningKey::from_bytes(&seed))
        })
        .collect();
    let mut operator_seq = client.next_seq("operator").unwrap();
    for (id, key) in &payers {
        let register = setup_body(&ledger, id, 0, CommandWire::Register { name: "payer".into() });
        assert!(matches!(post(&setup, &server.base, key, &register), Some(Outcome::Accepted { .. })));
        for command in [
            CommandWire::Approve { target: id.clone() },
            CommandWire::Issue { to: id.clone(), amount: "100000.00".into(), memo: None },
        ] {
            let body = setup_body(&ledger, "operator", operator_seq, command);
            assert!(matches!(post(&setup, &server.base, &operator, &body), Some(Outcome::Accepted { .. })));
            operator_seq += 1;
        }
    }

    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut last_note: Option<String> = None;
    let mut watched = 0;
    let seed: u64 = std::env::var("COVOIT_CRASH_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill times from COVOIT_CRASH_SEED={seed}");
    let mut random = seed;
    let mut next = |bound: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % bound
    };
    for cycle in 0..cycles {
        // The load: each worker pays from its own two accounts, in seq order.
        let collected = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..WORKERS)
            .map(|worker| {
                let (base, ledger, collected) = (server.base.clone(), ledger.clone(), collected.clone());
                let own: Vec<(String, SigningKey)> = payers.iter().skip(worker).step_by(WORKERS).cloned().collect();
                let payees: Vec<String> = payers.iter().map(|(id, _)| id.clone()).collect();
                std::thread::spawn(move || {
                    let agent = self::agent();
                    let client = Client::new(&base);
                    let mut seqs: HashMap<String, u64> =
                        own.iter().map(|(id, _)| (id.clone(), client.next_seq(id).unwrap())).collect();
                    for n in 0.. {
                        let (id, key) = &own[n % own.len()];
                        let to = payees[(n * 3 + worker + 1) % payees.len()].clone();
                        let to = if &to == id { payees[(n * 3 + worker + 2) % payees.len()].clone() } else { to };
                        let overdrawn = n % OVERDRAWN_EVERY == OVERDRAWN_EVERY - 1;
                        let amount = if overdrawn { "1000000.00" } else { "0.37" };
                        let command = CommandWire::Transfer { to, amount: amount.into(), memo: None };
                        let body = setup_body(&ledger, id, seqs[id], command);
                        match post(&agent, &base, key, &body) {
                            Some(outcome) => {
                                if overdrawn {
                                    assert!(
                                        matches!(outcome, Outcome::Refused { .. }),
                                        "a payment of more than the payer holds: {outcome:?}"
                                    );
                                }
                                if matches!(outcome, Outcome::Accepted { .. }) {
                                    *seqs.get_mut(id).unwrap() += 1;
                                }
                                collected.lock().unwrap().push(outcome);
                            }
                            None => return,
                        }
                    }
                })
            })
            .collect::<Vec<_>>();
        // Meanwhile, the checkpoints the service publishes: the last one seen before the
        // kill must still hold after it.
        let killed = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (client, killed) = (Client::new(&server.base), killed.clone());
            std::thread::spawn(move || {
                let mut seen = None;
                while !killed.load(Ordering::Relaxed) {
                    if let Ok(reply) = client.get("/v1/checkpoint") {
                        if reply.status == 200 {
                            seen = Some(reply.body);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                seen
            })
        };
        std::thread::sleep(Duration::from_millis(100 + next(900)));
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        killed.store(true, Ordering::Relaxed);
        let seen_before_kill = watcher.join().expect("the checkpoint watcher");
        for worker in workers {
            worker.join().expect("a payment worker");
        }
        outcomes.extend(collected.lock().unwrap().drain(..));

        if seen_before_kill.is_some() {
            last_note = seen_before_kill;
            watched += 1;
        }

        server = start(folder.path());
        // The audit passes on the restarted database, and its log extends the last
        // checkpoint seen before the kill and the one served now.
        let served = Client::new(&server.base).get("/v1/checkpoint").unwrap();
        assert_eq!(served.status, 200, "cycle {cycle}: {}", served.body);
        let notes: Vec<String> = last_note.iter().cloned().chain([served.body.clone()]).collect();
        let path = folder.path().join("covoit.db");
        let options = Options { seed: [cycle as u8; 32], since: notes.clone(), ..Options::default() };
        let (report, auditor) = audit::run(&mut DatabaseSource::open(&path).unwrap(), options, &|_, _| {})
            .unwrap_or_else(|failure| panic!("cycle {cycle}: the audit fails: {failure}"));
        DatabaseSource::open(&path).unwrap().check_derived(&auditor, &report).unwrap();
        assert_eq!(report.consistent_with.len(), notes.len(), "cycle {cycle}");
        last_note = Some(served.body);

        // Every acknowledged command is in the log; no refused one is.
        let txs = log_txs(&server.base);
        let logged: HashSet<&str> = txs.iter().flatten().map(String::as_str).collect();
        for outcome in &outcomes {
            match outcome {
                Outcome::Accepted { index, tx } => {
                    assert_eq!(
                        txs.get(*index as usize).cloned().flatten().as_deref(),
                        Some(tx.as_str()),
                        "cycle {cycle}"
                    )
                }
                Outcome::Refused { status, tx } => {
                    assert!(!logged.contains(tx.as_str()), "cycle {cycle}: refused ({status}) yet logged")
                }
            }
        }
    }
    let accepted = outcomes.iter().filter(|outcome| matches!(outcome, Outcome::Accepted { .. })).count();
    let refused = outcomes.len() - accepted;
    assert!(accepted > cycles * 10, "the load was real: {accepted} payments acknowledged over {cycles} kills");
    assert!(refused >= cycles, "refusals were there to check: {refused} over {cycles} kills");
    assert!(watched * 2 >= cycles, "checkpoints were seen under load before {watched} kills of {cycles}");
    eprintln!(
        "{cycles} kills, {accepted} acknowledged payments, all in the log after every restart; \
         {refused} refused, none in it; a checkpoint seen before {watched} kills held after them"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
