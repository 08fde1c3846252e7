//! The load generator behind `covoit load`: signed, durable payments over HTTP from
//! many clients at once, as the benchmarks in docs/performance.md run it.
//!
//! It sets up a population of accounts (registered, approved and funded by the
//! operator), then, for each client count asked for, signs every payment before the
//! clock starts, opens one keep-alive connection per client and posts them as fast
//! as the answers come back. Each client pays from its own accounts only, so every
//! account's `seq` goes up in order. It prints payments per second and the latency
//! percentiles of each run; `covoit audit <server>` afterwards checks what was kept.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Client;
use crate::clock::Clock;
use crate::core::body::{BodyWire, CommandWire};
use crate::core::ids::{AccountId, OPERATOR};
use crate::core::protocol::sign_body;

/// What each account starts with, in minor units' decimal form.
const FUNDING: &str = "1000000.00";
/// How long each signed payment stays valid.
const VALID_MS: i64 = 3_600_000;
/// Payments one client is signed at most per second of its run: more than one
/// connection can do, so a run ends by its deadline, not by running dry.
const RATE_PER_CLIENT_CEILING: f64 = 6_000.0;

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: usize,
    pub duration: Duration,
    /// Payments per second all clients together could reach at most (signing budget).
    pub rate_ceiling: f64,
    /// Exactly this many payments instead (the run ends when they are all answered).
    pub payments: Option<usize>,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub clients: usize,
    pub elapsed: Duration,
    pub accepted: usize,
    /// Refusals by status and code, e.g. "409 seq_reused".
    pub refused: BTreeMap<String, usize>,
    /// Connections that failed (reset, closed), and the payments lost with them.
    pub broken: usize,
    /// Latencies of the accepted payments, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, percent: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((percent / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    /// One line for people: clients, rate, latencies, refusals.
    pub fn summary(&self) -> String {
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        let mut line = format!(
            "clients {:>3}  payments {:>7}  in {:>5.2} s  {:>8.0} /s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
            self.clients,
            self.accepted,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        );
        for (code, count) in &self.refused {
            line.push_str(&format!("  refused {code}: {count}"));
        }
        if self.broken > 0 {
            line.push_str(&format!("  broken connections: {}", self.broken));
        }
        line
    }
}

/// The funded accounts payments are made between, with each one's next `seq`.
pub struct Population {
    server: String,
    ledger: String,
    accounts: Vec<Member>,
}

struct Member {
    id: String,
    key: SigningKey,
    next_seq: u64,
}

impl Population {
    /// Registers `count` new accounts and, as the operator, approves and funds them.
    pub fn create(server: &str, operator: &SigningKey, count: usize) -> anyhow::Result<Population> {
        if count < 2 {
            bail!("payments need at least two accounts");
        }
        let client = Client::new(server);
        let ledger = client.ledger_id().context("reading the ledger's id")?;
        let mut accounts: Vec<Member> = (0..count)
            .map(|_| Member { id: AccountId::new_member().to_string(), key: random_key(), next_seq: 0 })
            .collect();
        // Registrations are independent: several threads post them.
        let chunks = accounts.chunks(count.div_ceil(8)).collect::<Vec<_>>();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let handles = chunks
                .iter()
                .map(|chunk| {
                    let (client, ledger) = (Client::new(server), ledger.clone());
                    scope.spawn(move || -> anyhow::Result<()> {
                        for member in chunk.iter() {
                            let command = CommandWire::Register { name: format!("load {}", &member.id[..8]) };
                            post(&client, &member.key, body(&ledger, &member.id, 0, command))?;
                        }
                        Ok(())
                    })
                })
                .collect::<Vec<_>>();
            handles.into_iter().try_for_each(|handle| handle.join().expect("a registration thread"))
        })?;
        // The operator's commands carry consecutive seqs: one at a time.
        let mut seq = client.next_seq(OPERATOR).context("reading the operator's next seq")?;
        let approval_needed = client.get_json(&format!("/v1/accounts/{}", accounts[0].id))?["status"] == "pending";
        for member in &mut accounts {
            if approval_needed {
                post(
                    &client,
                    operator,
                    body(&ledger, OPERATOR, seq, CommandWire::Approve { target: member.id.clone() }),
                )?;
                seq += 1;
            }
            let issue = CommandWire::Issue { to: member.id.clone(), amount: FUNDING.into(), memo: None };
            post(&client, operator, body(&ledger, OPERATOR, seq, issue))?;
            seq += 1;
            member.next_seq = 1;
        }
        Ok(Population { server: server.trim_end_matches('/').to_owned(), ledger, accounts })
    }

    /// Signs the payments of one run, then posts them and measures.
    pub fn run(&mut self, plan: &Plan) -> anyhow::Result<Outcome> {
        if plan.clients == 0 || plan.clients > self.accounts.len() {
            bail!("between 1 and {} clients (one account at least each)", self.accounts.len());
        }
        let address = self.server.strip_prefix("http://").context("the load generator speaks plain http:// only")?;
        let address = address.split('/').next().unwrap_or(address).to_owned();
        let per_client = match plan.payments {
            Some(payments) => payments.div_ceil(plan.clients),
            None => ((plan.rate_ceiling / plan.clients as f64).min(RATE_PER_CLIENT_CEILING)
                * plan.duration.as_secs_f64())
            .ceil() as usize,
        };
        let queues = self.sign(plan.clients, per_client.max(1), &address);
        let deadline_after = plan.duration;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (results, elapsed) = runtime.block_on(async move {
            let start = Instant::now();
            let deadline = start + deadline_after;
            let tasks = queues
                .into_iter()
                .map(|queue| tokio::spawn(drive(address.clone(), queue, deadline)))
                .collect::<Vec<_>>();
            let mut results = Vec::with_capacity(tasks.len());
            for task in tasks {
                results.push(task.await.expect("a client task"));
            }
            (results, start.elapsed())
        });
        let mut outcome = Outcome {
            clients: plan.clients,
            elapsed,
            accepted: 0,
            refused: BTreeMap::new(),
            broken: 0,
            latencies: Vec::new(),
        };
        for result in results {
            outcome.accepted += result.latencies.len();
            outcome.latencies.extend(result.latencies);
            outcome.broken += result.broken;
            for (code, count) in result.refused {
                *outcome.refused.entry(code).or_default() += count;
            }
            for (account, seq) in result.sent {
                let member = &mut self.accounts[account];
                member.next_seq = member.next_seq.max(seq + 1);
            }
        }
        outcome.latencies.sort_unstable();
        Ok(outcome)
    }

    /// Each client's queue of signed requests, paying from its own accounts in turn.
    fn sign(&self, clients: usize, per_client: usize, host: &str) -> Vec<Queue> {
        let not_after = Clock::System.now().plus_ms(VALID_MS).to_string();
        let count = self.accounts.len();
        let sign_client = |client: usize| -> Queue {
            let own = (client..count).step_by(clients).collect::<Vec<_>>();
            let mut next = own.iter().map(|&account| self.accounts[account].next_seq).collect::<Vec<_>>();
            let mut random = Xorshift(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut requests = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let slot = n % own.len();
                let payer = own[slot];
                let payee = (payer + 1 + random.below(count as u64 - 1) as usize) % count;
                let cents = 1 + random.below(100);
                let command = CommandWire::Transfer {
                    to: self.accounts[payee].id.clone(),
                    amount: format!("{}.{:02}", cents / 100, cents % 100),
                    memo: None,
                };
                let member = &self.accounts[payer];
                let mut body = body(&self.ledger, &member.id, next[slot], command);
                body.not_after.clone_from(&not_after);
                let envelope = serde_json::to_vec(&sign_body(&member.key, &body)).expect("an envelope serializes");
                let mut request = format!(
                    "POST /v1/commands HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n",
                    envelope.len()
                )
                .into_bytes();
                request.extend_from_slice(&envelope);
                requests.push(Signed { request, account: payer, seq: next[slot] });
                next[slot] += 1;
            }
            Queue { requests }
        };
        // Signing is CPU work: both cores.
        let mut queues = Vec::with_capacity(clients);
        std::thread::scope(|scope| {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(clients);
            let handles = (0..threads)
                .map(|thread| {
                    let sign_client = &sign_client;
                    scope.spawn(move || {
                        (thread..clients)
                            .step_by(threads)
                            .map(|client| (client, sign_client(client)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect::<Vec<_>>();
            let mut all =
                handles.into_iter().flat_map(|handle| handle.join().expect("a signing thread")).collect::<Vec<_>>();
            all.sort_by_key(|(client, _)| *client);
            queues.extend(all.into_iter().map(|(_, queue)| queue));
        });
        queues
    }
}

struct Signed {
    request: Vec<u8>,
    account: usize,
    seq: u64,
}

struct Queue {
    requests: Vec<Signed>,
}

#[derive(Default)]
struct ClientResult {
    latencies: Vec<Duration>,
    refused: BTreeMap<String, usize>,
    broken: usize,
    /// (account, seq) of every payment whose answer came back.
    sent: Vec<(usize, u64)>,
}

/// One client: one keep-alive connection, one request at a time, until its queue is
/// empty or the deadline passes.
async fn drive(address: String, queue: Queue, deadline: Instant) -> ClientResult {
    let mut result = ClientResult::default();
    let mut connection: Option<Connection> = None;
    for signed in queue.requests {
        if Instant::now() >= deadline {
            break;
        }
        if connection.is_none() {
            match Connection::open(&address).await {
                Ok(opened) => connection = Some(opened),
                Err(_) => {
                    result.broken += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let open = connection.as_mut().expect("a connection");
        let started = Instant::now();
        match open.exchange(&signed.request).await {
            Ok((status, body, keep)) => {
                let latency = started.elapsed();
                result.sent.push((signed.account, signed.seq));
                if status == 200 {
                    result.latencies.push(latency);
                } else {
                    let code = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|value| value["error"]["code"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    *result.refused.entry(format!("{status} {code}")).or_default() += 1;
                }
                if !keep {
                    connection = None;
                }
            }
            Err(_) => {
                result.broken += 1;
                connection = None;
            }
        }
    }
    result
}

/// A minimal HTTP/1.1 client connection: enough for our own server's replies, which
/// always carry a content-length.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: &str) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::with_capacity(4096) })
    }

    /// Sends one request, reads one reply: (status, body, whether the connection stays open).
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>, bool)> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let broken = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            if self.read_more().await? == 0 {
                return Err(broken("closed before the reply's head"));
            }
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).map_err(|_| broken("a head not in UTF-8"))?;
        let status = head.get(9..12).and_then(|code| code.parse::<u16>().ok()).ok_or_else(|| broken("no status"))?;
        let mut length = None;
        let mut keep = true;
        for line in head.lines().skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                    keep = false;
                }
            }
        }
        let length = length.ok_or_else(|| broken("a reply without content-length"))?;
        while self.buffer.len() < head_end + length {
            if self.read_more().await? == 0 {
                return Err(broken("closed in the reply's body"));
            }
        }
        Ok((status, self.buffer[head_end..head_end + length].to_vec(), keep))
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn body(ledger: &str, account: &str, seq: u64, command: CommandWire) -> BodyWire {
    let not_after = Clock::System.now().plus_ms(VALID_MS).to_string();
    BodyWire {
        ledger: ledger.to_owned(),
        account: account.to_owned(),
        seq: seq.to_string(),
        not_after,
        by: None,
        command,
    }
}

fn post(client: &Client, key: &SigningKey, body: BodyWire) -> anyhow::Result<()> {
    let reply = client.post_envelope(&sign_body(key, &body))?;
    if reply.status != 200 {
        bail!("setting up the accounts: refused ({}): {}", reply.status, reply.body);
    }
    Ok(())
}

fn random_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the system's random numbers");
    SigningKey::from_bytes(&seed)
}

/// A small, fast pseudo-random sequence for choosing payees and amounts.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
