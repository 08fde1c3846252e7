//! The ceilings a signed, durable payment service has on this machine, measured in the
//! same run as the throughput benchmark (benches/throughput.sh runs this first):
//!
//! - Ed25519 `verify_strict` per second, on one core and on every core;
//! - SQLite's durable commit rate: one small transaction per commit, WAL and
//!   `synchronous=FULL`, as covoit opens its database;
//! - the raw `fdatasync` rate of a small appended file, the disk's own ceiling.
//!
//! Prints figures; asserts nothing about time.
//!
//!     cargo bench --bench ceilings

use std::io::Write;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};

const RUN: Duration = Duration::from_secs(3);

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("verify_strict, 1 core:       {:>8.0} /s", verify_rate(1));
    println!("verify_strict, {cores} cores:      {:>8.0} /s", verify_rate(cores));
    let folder = tempfile::Builder::new().prefix("covoit-ceilings").tempdir_in(".").unwrap();
    println!(
        "SQLite durable commits:      {:>8.0} /s (WAL, synchronous=FULL, one row each)",
        sqlite_rate(folder.path())
    );
    println!("fdatasync of an appended file: {:>6.0} /s", fsync_rate(folder.path()));
}

/// Signatures checked per second by `threads` threads, each on its own messages.
fn verify_rate(threads: usize) -> f64 {
    let signed: Vec<_> = (0..256u32)
        .map(|n| {
            let key = SigningKey::from_bytes(&[n as u8; 32]);
            let message = format!("covoit/command/v1\n{{\"n\":{n},\"padding\":\"{}\"}}", "x".repeat(300));
            let signature = key.sign(message.as_bytes());
            (key.verifying_key(), message, signature)
        })
        .collect();
    let started = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let handles = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut count = 0;
                    while started.elapsed() < RUN {
                        for (key, message, signature) in &signed {
                            key.verify_strict(message.as_bytes(), signature).expect("a valid signature");
                        }
                        count += signed.len();
                    }
                    count
                })
            })
            .collect::<Vec<_>>();
        handles.into_iter().map(|handle| handle.join().unwrap()).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// Commits per second of one-row transactions, as covoit's writer opens the database.
fn sqlite_rate(folder: &std::path::Path) -> f64 {
    let connection = covoit::store::open_writer(&folder.join("ceiling.db")).unwrap();
    connection.execute_batch("CREATE TABLE entries (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)").unwrap();
    let payload = vec![7u8; 400];
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < RUN {
        connection.execute_batch("BEGIN IMMEDIATE").unwrap();
        connection.execute("INSERT INTO entries (payload) VALUES (?1)", [&payload]).unwrap();
        connection.execute_batch("COMMIT").unwrap();
        commits += 1;
    }
    commits as f64 / started.elapsed().as_secs_f64()
}

/// `fdatasync` calls per second, each after appending 400 bytes.
fn fsync_rate(folder: &std::path::Path) -> f64 {
    let mut file = std::fs::File::create(folder.join("ceiling.log")).unwrap();
    let payload = vec![7u8; 400];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < RUN {
        file.write_all(&payload).unwrap();
        file.sync_data().unwrap();
        syncs += 1;
    }
    syncs as f64 / started.elapsed().as_secs_f64()
}
