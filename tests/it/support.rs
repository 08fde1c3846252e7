//! The test harness: a real service on 127.0.0.1:0 with a temporary database, and a
//! plain HTTP client that signs commands the way any client would.

use std::path::Path;
use std::time::Duration;

use covoit::clock::Clock;
use covoit::config::Config;
use covoit::core::protocol::{BodyWire, CommandWire, Envelope, base64_encode, sign_body};
use covoit::core::time::Timestamp;
use covoit::service::Service;
use ed25519_dalek::SigningKey;
use serde_json::Value;
use tempfile::TempDir;

/// When every test's manual clock starts: a Wednesday morning in Ayen.
pub const START: &str = "2026-11-25T08:00:00Z";
/// How long after "now" the commands built here expire.
pub const VALID_MS: i64 = 10 * 60 * 1000;

/// A running service and everything a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub folder: TempDir,
    pub operator: SigningKey,
    pub ledger: String,
    pub clock: Clock,
    runtime: tokio::runtime::Runtime,
    service: Option<Service>,
    agent: ureq::Agent,
}

/// A member account and its key.
#[derive(Clone)]
pub struct Member {
    pub id: String,
    pub key: SigningKey,
}

impl Member {
    /// A member whose key is derived from a seed, so tests are repeatable.
    pub fn new(seed: u64) -> Member {
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&seed.to_le_bytes());
        secret[31] = 0x5a;
        Member { id: format!("00000000-0000-4000-8000-{seed:012x}"), key: SigningKey::from_bytes(&secret) }
    }
}

impl TestApp {
    /// A new ledger in a new folder.
    pub fn spawn() -> TestApp {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let operator = SigningKey::from_bytes(&[0x0b; 32]);
        let clock = Clock::manual(Timestamp::parse(START).unwrap());
        TestApp::start_in(folder, operator, clock)
    }

    /// A new ledger on the system clock: for a browser, whose page reads the real time.
    #[allow(dead_code)]
    pub fn spawn_live() -> TestApp {
        let folder = tempfile::tempdir().expect("a temporary folder");
        TestApp::start_in(folder, SigningKey::from_bytes(&[0x0b; 32]), Clock::System)
    }

    /// A new ledger whose database lives in `folder`, with `adjust` applied to its
    /// configuration (limits, timeouts).
    #[allow(dead_code)]
    pub fn spawn_with(folder: TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let operator = SigningKey::from_bytes(&[0x0b; 32]);
        let clock = Clock::manual(Timestamp::parse(START).unwrap());
        let mut config = config_for(folder.path(), &operator, clock.clone());
        adjust(&mut config);
        TestApp::start_with(folder, operator, clock, config)
    }

    fn start_in(folder: TempDir, operator: SigningKey, clock: Clock) -> TestApp {
        let config = config_for(folder.path(), &operator, clock.clone());
        TestApp::start_with(folder, operator, clock, config)
    }

    fn start_with(folder: TempDir, operator: SigningKey, clock: Clock, config: Config) -> TestApp {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let service = runtime.block_on(Service::start(config)).expect("the service starts");
        let base = format!("http://{}", service.local_addr());
        let ledger = service.ledger_id().to_string();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        TestApp { base, folder, operator, ledger, clock, runtime, service: Some(service), agent }
    }

    /// Stops the service cleanly and starts it again on the same files.
    pub fn restart(&mut self) {
        self.stop();
        let config = config_for(self.folder.path(), &self.operator, self.clock.clone());
        let service = self.runtime.block_on(Service::start(config)).expect("the service starts again");
        self.base = format!("http://{}", service.local_addr());
        self.service = Some(service);
    }

    /// Starts the stopped service again on its files, if it will: its refusal otherwise.
    #[allow(dead_code)]
    pub fn try_restart(&mut self) -> Result<(), String> {
        let config = config_for(self.folder.path(), &self.operator, self.clock.clone());
        let service = self.runtime.block_on(Service::start(config)).map_err(|error| format!("{error:#}"))?;
        self.base = format!("http://{}", service.local_addr());
        self.service = Some(service);
        Ok(())
    }

    /// Appends the server events due at the test's clock (rides settling, expiring).
    pub fn tick(&self) {
        if let Some(service) = &self.service {
            self.runtime.block_on(service.tick());
        }
    }

    /// A body for `account`'s next command, signed by the desk when `by_desk`.
    pub fn body(&self, account: &str, command: CommandWire, by_desk: bool) -> BodyWire {
        BodyWire {
            ledger: self.ledger.clone(),
            account: account.to_owned(),
            seq: self.next_seq(account),
            not_after: self.not_after(),
            by: by_desk.then(|| "operator".to_owned()),
            command,
        }
    }

    pub fn stop(&mut self) {
        if let Some(service) = self.service.take() {
            self.runtime.block_on(service.stop());
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn not_after(&self) -> String {
        self.now().plus_ms(VALID_MS).to_string()
    }

    /// GET a path; returns the status and the JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut response = self.agent.get(&format!("{}{path}", self.base)).call().expect("the service answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("GET {path} answered non-JSON: {text}")))
    }

    /// POST raw bytes to `/v1/commands`; returns the status and the JSON body.
    pub fn post_bytes(&self, bytes: &[u8]) -> (u16, Value) {
        let mut response = self
            .agent
            .post(&format!("{}/v1/commands", self.base))
            .header("content-type", "application/json")
            .send(bytes)
            .expect("the service answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("POST answered non-JSON: {text}")))
    }

    pub fn post(&self, envelope: &Envelope) -> (u16, Value) {
        self.post_bytes(&serde_json::to_vec(envelope).unwrap())
    }

    /// Signs and posts; panics unless the service accepts it; returns the receipt.
    pub fn accept(&self, key: &SigningKey, body: &BodyWire) -> Value {
        let (status, reply) = self.post(&sign_body(key, body));
        assert_eq!(status, 200, "expected acceptance of {body:?}, got {reply}");
        reply
    }

    pub fn next_seq(&self, account: &str) -> String {
        let (status, reply) = self.get(&format!("/v1/accounts/{account}"));
        if status == 404 {
            return "0".into();
        }
        reply["next_seq"].as_str().unwrap().to_owned()
    }

    pub fn account(&self, account: &str) -> Value {
        let (status, reply) = self.get(&format!("/v1/accounts/{account}"));
        assert_eq!(status, 200, "{reply}");
        reply
    }

    pub fn balance(&self, account: &str) -> String {
        self.account(account)["balance"].as_str().unwrap().to_owned()
    }

    pub fn size(&self) -> u64 {
        self.get("/v1/ledger").1["size"].as_u64().unwrap()
    }

    // Bodies, with the ledger, seq and not_after filled in.

    pub fn register_body(&self, member: &Member, name: &str) -> BodyWire {
        BodyWire {
            ledger: self.ledger.clone(),
            account: member.id.clone(),
            seq: "0".into(),
            not_after: self.not_after(),
            by: None,
            command: CommandWire::Register { name: name.into() },
        }
    }

    pub fn approve_body(&self, target: &str) -> BodyWire {
        BodyWire {
            ledger: self.ledger.clone(),
            account: "operator".into(),
            seq: self.next_seq("operator"),
            not_after: self.not_after(),
            by: None,
            command: CommandWire::Approve { target: target.into() },
        }
    }

    pub fn credit_body(&self, target: &str, floor: &str) -> BodyWire {
        BodyWire {
            ledger: self.ledger.clone(),
            account: "operator".into(),
            seq: self.next_seq("operator"),
            not_after: self.not_after(),
            by: None,
            command: CommandWire::CreditSet { target: target.into(), floor: floor.into() },
        }
    }

    pub fn issue_body(&self, to: &str, amount: &str) -> BodyWire {
        BodyWire {
            ledger: self.ledger.clone(),
            account: "operator".into(),
            seq: self.next_seq("operator"),
            not_after: self.not_after(),
            by: None,
            command: CommandWire::Issue {
                to: to.into(),
                amount: amount.into(),
                memo: Some("euros received at the desk".into()),
            },
        }
    }

    pub fn transfer_body(&self, from: &Member, to: &str, amount: &str) -> BodyWire {
        BodyWire {
            ledger: self.ledger.clone(),
            account: from.id.clone(),
            seq: self.next_seq(&from.id),
            not_after: self.not_after(),
            by: None,
            command: CommandWire::Transfer { to: to.into(), amount: amount.into(), memo: None },
        }
    }

    pub fn redeem_body(&self, from: &Member, amount: &str) -> BodyWire {
        BodyWire {
            ledger: self.ledger.clone(),
            account: from.id.clone(),
            seq: self.next_seq(&from.id),
            not_after: self.not_after(),
            by: None,
            command: CommandWire::Redeem { amount: amount.into(), memo: None },
        }
    }

    /// Registers and approves a member.
    pub fn join(&self, member: &Member, name: &str) {
        self.accept(&member.key, &self.register_body(member, name));
        self.accept(&self.operator, &self.approve_body(&member.id));
    }

    pub fn issue(&self, to: &Member, amount: &str) {
        self.accept(&self.operator, &self.issue_body(&to.id, amount));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn config_for(folder: &Path, operator: &SigningKey, clock: Clock) -> Config {
    let mut config = Config::new(folder.join("covoit.db"), folder.join("keys"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.operator_key = Some(operator.verifying_key().to_bytes());
    config.ledger_id = Some(covoit::core::ids::LedgerId::parse("covoit/test/ayen").unwrap());
    config.clock = clock;
    config
}

/// The envelope of arbitrary body bytes, signed by `key`: what a careless or hostile
/// client could send.
pub fn sign_raw(key: &SigningKey, body: &[u8]) -> Envelope {
    use ed25519_dalek::Signer;
    let signature = key.sign(&covoit::core::protocol::signed_message(body));
    Envelope {
        body: base64_encode(body),
        key: base64_encode(key.verifying_key().as_bytes()),
        sig: base64_encode(&signature.to_bytes()),
    }
}

/// The canonical bytes of a body, as a string to edit.
pub fn body_text(body: &BodyWire) -> String {
    String::from_utf8(covoit::core::canonical::to_canonical_vec(body)).unwrap()
}

/// The error code of a refusal reply.
pub fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error reply: {reply}"))
}
