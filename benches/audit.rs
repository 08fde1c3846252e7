//! How fast `covoit audit` verifies a ledger, beside the raw Ed25519 rates measured
//! in the same run.
//!
//! Builds a village ledger of `COVOIT_BENCH_LEAVES` leaves (default 200,000: 100
//! members paying each other, with the desk's issues) as an export file, then audits
//! it with the library's auditor exactly as `covoit audit --export` does. Prints
//! figures; asserts nothing about time.
//!
//!     cargo bench --bench audit

use std::io::Write;
use std::time::Instant;

use covoit::audit::{self, ExportSource, Options};
use covoit::core::checkpoint;
use covoit::core::ids::AccountId;
use covoit::core::leaf::{self, Content};
use covoit::core::ledger::{self, State};
use covoit::core::merkle::{self, Frontier};
use covoit::core::policy::{Currency, Event, Genesis, Policy};
use covoit::core::protocol::{self, BodyWire, CommandWire, base64_encode, sign_body};
use covoit::core::time::Timestamp;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MEMBERS: usize = 100;
const LEDGER: &str = "covoit/bench/ayen";

fn main() {
    let leaves: usize = std::env::var("COVOIT_BENCH_LEAVES").ok().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let folder = tempfile::tempdir().unwrap();
    let export = folder.path().join("bench.export");
    let started = Instant::now();
    build_ledger(&export, leaves);
    println!("built a ledger of {leaves} leaves in {:.1} s", started.elapsed().as_secs_f64());

    let (strict_one, batch_one) = raw_rates(1);
    let (strict_two, batch_two) = raw_rates(2);
    println!("raw Ed25519 verify_strict: {strict_one:.0}/s on one core, {strict_two:.0}/s on two");
    println!("raw Ed25519 batch (64):    {batch_one:.0}/s on one core, {batch_two:.0}/s on two");

    for strict in [false, true] {
        let options = Options { strict, seed: [7; 32], ..Options::default() };
        let started = Instant::now();
        let (report, _) = audit::run(&mut ExportSource::open(&export).unwrap(), options, &|_, _| {}).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let mode = if strict { "--strict (verify_strict each)" } else { "default (batches)" };
        println!(
            "covoit audit {mode}: {} leaves in {seconds:.2} s = {:.0} leaves/s",
            report.leaves,
            report.leaves as f64 / seconds
        );
    }
}

/// Signs and verifies a fixed set of messages on `threads` threads.
fn raw_rates(threads: usize) -> (f64, f64) {
    let per_thread = 8192;
    let keys: Vec<SigningKey> = (0..MEMBERS).map(|n| SigningKey::from_bytes(&[n as u8 + 1; 32])).collect();
    let work: Vec<(VerifyingKey, Vec<u8>, Signature)> = (0..per_thread)
        .map(|n| {
            let key = &keys[n % MEMBERS];
            let message = format!("covoit/command/v1\n{{\"amount\":\"{n}.00\",\"type\":\"transfer\"}}").into_bytes();
            let signature = key.sign(&message);
            (key.verifying_key(), message, signature)
        })
        .collect();
    let time = |run: &(dyn Fn() + Sync)| {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(run);
            }
        });
        (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
    };
    let strict = time(&|| {
        for (key, message, signature) in &work {
            key.verify_strict(message, signature).unwrap();
        }
    });
    let batch = time(&|| {
        for chunk in work.chunks(64) {
            let messages: Vec<&[u8]> = chunk.iter().map(|(_, message, _)| message.as_slice()).collect();
            let signatures: Vec<Signature> = chunk.iter().map(|(_, _, signature)| *signature).collect();
            let keys: Vec<VerifyingKey> = chunk.iter().map(|(key, _, _)| *key).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &keys).unwrap();
        }
    });
    (strict, batch)
}

/// Writes an export of a ledger of `size` leaves, built with the service's own core.
fn build_ledger(path: &std::path::Path, size: usize) {
    let operator = SigningKey::from_bytes(&[0xee; 32]);
    let ledger_key = SigningKey::from_bytes(&[0xdd; 32]);
    let members: Vec<(AccountId, SigningKey)> = (0..MEMBERS)
        .map(|n| {
            let id = AccountId::parse(&format!("00000000-0000-4000-8000-{n:012x}")).unwrap();
            (id, SigningKey::from_bytes(&[n as u8 + 1; 32]))
        })
        .collect();
    let genesis = Genesis {
        ledger: LEDGER.into(),
        currency: Currency::default(),
        ledger_key: base64_encode(ledger_key.verifying_key().as_bytes()),
        operator_key: base64_encode(operator.verifying_key().as_bytes()),
        policy: Policy { approval_required: false, ..Policy::default() },
    };
    let mut now = Timestamp::parse("2026-11-25T08:00:00Z").unwrap();
    let mut state = State::from_genesis(&genesis, now).unwrap();
    let mut frontier = Frontier::new();
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(size);
    let mut append = |content: Content<'_>, postings: &[leaf::Posting], now: Timestamp, frontier: &mut Frontier| {
        let bytes = leaf::encode(frontier.size(), now, content, postings);
        frontier.push(merkle::leaf_hash(&bytes));
        lines.push(bytes);
    };
    append(Content::Event(&Event::Genesis(Box::new(genesis.clone()))), &[], now, &mut frontier);
    let mut seqs = vec![0u64; MEMBERS];
    let mut operator_seq = 0u64;
    let mut step = 0usize;
    while frontier.size() < size as u64 {
        now = now.plus_ms(250);
        let not_after = now.plus_ms(600_000).to_string();
        let member = step % MEMBERS;
        let (key, body) = if step < MEMBERS {
            let body = BodyWire {
                ledger: LEDGER.into(),
                account: members[member].0.to_string(),
                seq: "0".into(),
                not_after,
                by: None,
                command: CommandWire::Register { name: format!("Member {member}") },
            };
            seqs[member] = 1;
            (&members[member].1, body)
        } else if step < 2 * MEMBERS || step % 50 == 0 {
            let member = (step / 50 + step) % MEMBERS;
            operator_seq += 1;
            let body = BodyWire {
                ledger: LEDGER.into(),
                account: "operator".into(),
                seq: (operator_seq - 1).to_string(),
                not_after,
                by: None,
                command: CommandWire::Issue { to: members[member].0.to_string(), amount: "100.00".into(), memo: None },
            };
            (&operator, body)
        } else {
            let payee = (member * 7 + step / MEMBERS) % MEMBERS;
            let payee = if payee == member { (payee + 1) % MEMBERS } else { payee };
            seqs[member] += 1;
            let body = BodyWire {
                ledger: LEDGER.into(),
                account: members[member].0.to_string(),
                seq: (seqs[member] - 1).to_string(),
                not_after,
                by: None,
                command: CommandWire::Transfer { to: members[payee].0.to_string(), amount: "0.06".into(), memo: None },
            };
            (&members[member].1, body)
        };
        step += 1;
        let envelope = sign_body(key, &body);
        let command = protocol::verify_envelope(envelope.clone()).unwrap();
        match ledger::apply(&mut state, &command, now) {
            Ok(outcome) => append(Content::Command(&envelope), &outcome.postings, now, &mut frontier),
            Err(_) => {
                // A payer without money: its seq was not used.
                if let CommandWire::Transfer { .. } = body.command {
                    seqs[member] -= 1;
                }
            }
        }
    }
    let note = checkpoint::sign_checkpoint(LEDGER, frontier.size(), &frontier.root(), &ledger_key);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let header = serde_json::json!({"format": audit::EXPORT_FORMAT, "checkpoint": note});
    writeln!(file, "{header}").unwrap();
    for line in &lines {
        file.write_all(line).unwrap();
        file.write_all(b"\n").unwrap();
    }
    file.flush().unwrap();
}
