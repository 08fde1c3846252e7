//! Security: nobody moves money from an account without its key — not a replay on
//! another ledger or at another seq, not the operator — and private keys never show
//! in logs, outputs or replies.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use covoit::core::protocol::{base64_decode, base64_encode, sign_body};
use ed25519_dalek::SigningKey;

use crate::support::{Member, TestApp, code};

#[test]
fn nobody_moves_money_without_the_accounts_key() {
    let app = TestApp::spawn();
    let (alice, bob) = (Member::new(81), Member::new(82));
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.issue(&alice, "50.00");
    let before = (app.size(), app.balance(&alice.id), app.balance(&bob.id));

    // The operator signs a payment from Alice's account: with its own key...
    let payment = app.transfer_body(&alice, &bob.id, "10.00");
    let (status, reply) = app.post(&sign_body(&app.operator, &payment));
    assert_eq!((status, code(&reply)), (403, "wrong_key"), "{reply}");
    // ...or claiming to act for her at the desk, which only custodial accounts allow.
    let mut for_her = payment.clone();
    for_her.by = Some("operator".into());
    let (status, reply) = app.post(&sign_body(&app.operator, &for_her));
    assert_eq!((status, code(&reply)), (403, "not_custodial"), "{reply}");

    // Alice's own signed payment, replayed on another ledger, is refused there.
    let signed = sign_body(&alice.key, &payment);
    let other = TestApp::spawn_with(tempfile::tempdir().unwrap(), |config| {
        config.ledger_id = Some(covoit::core::ids::LedgerId::parse("covoit/test/elsewhere").unwrap());
    });
    other.join(&alice, "Alice");
    other.join(&bob, "Bob");
    other.issue(&alice, "50.00");
    let (status, reply) = other.post(&signed);
    assert_eq!((status, code(&reply)), (400, "wrong_ledger"), "{reply}");
    assert_eq!(other.balance(&alice.id), "50.00");

    // Moved to another seq, the signature no longer holds.
    let mut moved: serde_json::Value =
        serde_json::from_slice(&base64_decode(&signed.body).unwrap()).expect("the body is JSON");
    moved["seq"] = "7".into();
    let mut replayed = signed.clone();
    replayed.body = base64_encode(&covoit::core::canonical::to_canonical_vec(&moved));
    let (status, reply) = app.post(&replayed);
    assert_eq!((status, code(&reply)), (401, "bad_signature"), "{reply}");
    assert_eq!((app.size(), app.balance(&alice.id), app.balance(&bob.id)), before, "nothing moved");

    // Posted once for real, then again: one payment, the same receipt.
    let (first, receipt) = app.post(&signed);
    assert_eq!(first, 200, "{receipt}");
    assert_eq!(app.post(&signed), (200, receipt));
    assert_eq!(app.balance(&alice.id), "40.00");
    assert_eq!(app.balance(&bob.id), "10.00");
}

/// Every spelling of a key's secret that could leak: base64 and hex of the seed, and
/// the base64 lines of its PEM file.
fn secret_spellings(path: &Path) -> Vec<String> {
    let key: SigningKey = covoit::keys::read(path).unwrap();
    let seed = key.to_bytes();
    let hex: String = seed.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut spellings =
        vec![base64_encode(&seed), base64_encode(&seed).trim_end_matches('=').replace('+', "-").replace('/', "_"), hex];
    let pem = std::fs::read_to_string(path).unwrap();
    spellings.extend(pem.lines().filter(|line| !line.starts_with("-----")).map(str::to_owned));
    spellings.retain(|spelling| spelling.len() >= 16);
    spellings
}

#[test]
fn private_keys_never_appear_in_logs_outputs_or_replies() {
    let folder = tempfile::tempdir().unwrap();
    let folder = folder.path();
    let binary = env!("CARGO_BIN_EXE_covoit");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(folder)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the service's output as it comes, so that it never blocks on a full pipe.
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            stream.unwrap().read_to_string(&mut text).unwrap();
            text
        })
    };
    let out = drain(server.stdout.take().map(|stream| Box::new(stream) as Box<dyn Read + Send>));
    let err = drain(server.stderr.take().map(|stream| Box::new(stream) as Box<dyn Read + Send>));
    let client = covoit::client::Client::new(&base);
    let started = Instant::now();
    while !client.get("/healthz").is_ok_and(|reply| reply.status == 200) {
        assert!(started.elapsed() < Duration::from_secs(30), "the service did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen = String::new();
    let mut run = |args: &[&str]| {
        let output = Command::new(binary).args(args).current_dir(folder).env("COVOIT_SERVER", &base).output().unwrap();
        seen.push_str(&String::from_utf8_lossy(&output.stdout));
        seen.push_str(&String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    run(&["keygen", "--out", "alice.key"]);
    run(&["keygen", "--out", "bob.key"]);
    let alice = run(&["register", "--key", "alice.key", "--name", "Alice"]);
    let bob = run(&["register", "--key", "bob.key", "--name", "Bob"]);
    run(&["approve", "--key", "keys/operator-demo.key", &alice]);
    run(&["approve", "--key", "keys/operator-demo.key", &bob]);
    run(&["issue", "--key", "keys/operator-demo.key", "--to", &alice, "--amount", "20.00"]);
    run(&["transfer", "--key", "alice.key", "--account", &alice, "--to", &bob, "--amount", "3.00"]);
    run(&["transfer", "--key", "alice.key", "--account", &alice, "--to", &bob, "--amount", "300.00"]); // refused
    run(&["backup", "--db", "covoit.db", "--out", "copy.db"]);
    run(&["audit", &base]);
    for path in [
        "/".to_owned(),
        "/v1/ledger".into(),
        "/v1/checkpoint".into(),
        "/v1/log".into(),
        "/v1/accounts/operator".into(),
        format!("/v1/accounts/{alice}"),
        format!("/v1/accounts/{alice}/postings"),
        "/openapi.json".into(),
    ] {
        seen.push_str(&client.get(&path).unwrap().body);
    }
    assert!(seen.contains(&alice), "the outputs were collected");
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    server.wait().unwrap();
    seen.push_str(&out.join().unwrap());
    seen.push_str(&err.join().unwrap());
    assert!(seen.contains("listening"), "the service's log was collected");

    for key in ["keys/ledger.key", "keys/operator-demo.key", "alice.key", "bob.key"] {
        for spelling in secret_spellings(&folder.join(key)) {
            assert!(!seen.contains(&spelling), "the secret of {key} appeared in a log, output or reply");
        }
    }
}
