//! The `covoit` command: the service (`serve`), key generation (`keygen`) and a signing
//! client for people and scripts (`register`, `approve`, `credit-set`, `issue`,
//! `transfer`, `redeem`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use covoit::audit;
use covoit::client::Client;
use covoit::clock::Clock;
use covoit::config::{Config, ServeArgs};
use covoit::core::ids::{AccountId, OPERATOR};
use covoit::core::protocol::{BodyWire, CommandWire, base64_decode, base64_encode, sign_body};
use covoit::keys;
use covoit::service::Service;

/// mimalloc: the service and the auditor allocate many small strings (JSON); the
/// system allocator made the audit a third slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "covoit", version, about = "Proximity carpooling paid in a local currency, on a signed ledger.")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the service (creates the database and keys on first start).
    Serve(ServeArgs),
    /// Write a new Ed25519 key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; an existing file is never replaced.
        #[arg(long)]
        out: PathBuf,
    },
    /// Register a new account for a key; prints the new account's id.
    Register {
        #[command(flatten)]
        signing: Signing,
        /// The name shown to the desk and to the people you ride with.
        #[arg(long)]
        name: String,
    },
    /// Approve a pending account (operator).
    Approve {
        #[command(flatten)]
        signing: Signing,
        /// The account to approve.
        target: String,
    },
    /// Set an account's floor, 0 or a negative credit line such as -50.00 (operator).
    CreditSet {
        #[command(flatten)]
        signing: Signing,
        target: String,
        #[arg(long, allow_hyphen_values = true)]
        floor: String,
    },
    /// Issue currency to a member against euros received at the desk (operator).
    Issue {
        #[command(flatten)]
        signing: Signing,
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        memo: Option<String>,
    },
    /// Pay another member.
    Transfer {
        #[command(flatten)]
        signing: Signing,
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        memo: Option<String>,
    },
    /// Verify a ledger offline: every signature, every balance, the Merkle root and the
    /// signed checkpoint. Exits 1 naming the first failing leaf.
    Audit(AuditArgs),
    /// Measure signed, durable payments per second over HTTP (see docs/performance.md):
    /// funds new accounts with the operator's key, signs every payment before the clock
    /// starts, then posts them from many clients at once.
    Load(LoadArgs),
    /// Write a ledger's log and signed checkpoint to a file, to audit it elsewhere.
    Export {
        #[command(flatten)]
        source: SourceArgs,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Copy the database while the service runs (SQLite's online backup API, one
    /// consistent snapshot), check the copy and say what it holds. The ledger's key
    /// (keys/ledger.key) is not in the copy: back it up once, separately.
    Backup {
        /// The live database.
        #[arg(long, env = "COVOIT_DB", default_value = "covoit.db")]
        db: PathBuf,
        /// The new file to write; an existing file is never replaced.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign and post any command, given as JSON with its type and own fields (the
    /// ledger, account, seq and not_after are filled in): for rides, policy and
    /// meeting points, e.g. --body '{"type":"ride.accept","booking":"<uuid>"}'.
    Send {
        #[command(flatten)]
        signing: Signing,
        /// The command's type and fields, as a JSON object.
        #[arg(long)]
        body: String,
        /// The desk signs for a custodial account (the body says "by": "operator").
        #[arg(long)]
        by_desk: bool,
    },
    /// Hand currency back to the desk for euros.
    Redeem {
        #[command(flatten)]
        signing: Signing,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        memo: Option<String>,
    },
}

#[derive(Args)]
struct AuditArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// A checkpoint saved earlier (a file holding its signed note) that the log must
    /// still contain unchanged; may be given several times.
    #[arg(long)]
    since: Vec<PathBuf>,
    /// The ledger key you expect, base64 (as published by the desk); the genesis must name it.
    #[arg(long)]
    ledger_key: Option<String>,
    /// Run verify_strict on every signature instead of batch verification (slower).
    #[arg(long)]
    strict: bool,
}

/// Where a ledger is read from: exactly one of these.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct SourceArgs {
    /// A running service's base URL.
    #[arg(long)]
    server: Option<String>,
    /// A database file (read only; the service may be running).
    #[arg(long)]
    db: Option<PathBuf>,
    /// A file written by `covoit export`.
    #[arg(long)]
    export: Option<PathBuf>,
}

/// Who signs, and how the command reaches the service.
#[derive(Args)]
struct Signing {
    /// The signer's key file (as written by `covoit keygen`).
    #[arg(long)]
    key: PathBuf,
    /// The signing account: a member's id, or "operator" for desk commands (the default
    /// for approve, credit-set and issue).
    #[arg(long)]
    account: Option<String>,
    /// The service's base URL.
    #[arg(long, env = "COVOIT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The sequence number to sign; by default the account's next one, asked of the service.
    #[arg(long)]
    seq: Option<u64>,
    /// Minutes the signed command stays valid (its not_after).
    #[arg(long, default_value_t = 10)]
    valid_minutes: u32,
    /// Print the signed envelope instead of posting it.
    #[arg(long)]
    print_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("covoit: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Commands) -> anyhow::Result<ExitCode> {
    match command {
        Commands::Serve(args) => serve(args),
        Commands::Keygen { out } => {
            let key = keys::generate()?;
            keys::write_new(&out, &key)?;
            println!("{}", base64_encode(key.verifying_key().as_bytes()));
            Ok(ExitCode::SUCCESS)
        }
        Commands::Register { signing, name } => {
            let account = match &signing.account {
                Some(account) => AccountId::parse_member(account)?,
                None => AccountId::new_member(),
            };
            let signing =
                Signing { account: Some(account.to_string()), seq: Some(signing.seq.unwrap_or(0)), ..signing };
            let code = send(&signing, OPERATOR, CommandWire::Register { name })?;
            if code == ExitCode::SUCCESS && !signing.print_only {
                println!("{account}");
            }
            Ok(code)
        }
        Commands::Approve { signing, target } => send(&signing, OPERATOR, CommandWire::Approve { target }),
        Commands::CreditSet { signing, target, floor } => {
            send(&signing, OPERATOR, CommandWire::CreditSet { target, floor })
        }
        Commands::Issue { signing, to, amount, memo } => {
            send(&signing, OPERATOR, CommandWire::Issue { to, amount, memo })
        }
        Commands::Transfer { signing, to, amount, memo } => {
            send(&signing, "", CommandWire::Transfer { to, amount, memo })
        }
        Commands::Send { signing, body, by_desk } => {
            let command = command_from_json(&body)?;
            let default = if by_desk { "" } else { OPERATOR };
            let signing = Signing { account: signing.account.clone(), ..signing };
            send_as(&signing, default, command, by_desk)
        }
        Commands::Audit(args) => audit(args),
        Commands::Load(args) => load(args),
        Commands::Backup { db, out } => {
            print!("{}", covoit::store::backup::backup(&db, &out)?);
            Ok(ExitCode::SUCCESS)
        }
        Commands::Export { source, out } => {
            let mut source = open_source(&source)?;
            let file = std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let written =
                audit::export(source.as_mut(), &mut writer).map_err(|failure| anyhow::anyhow!("{failure}"))?;
            eprintln!("wrote {written} leaves and the signed checkpoint to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Commands::Redeem { signing, amount, memo } => send(&signing, "", CommandWire::Redeem { amount, memo }),
    }
}

fn open_source(args: &SourceArgs) -> anyhow::Result<Box<dyn audit::Source>> {
    let source: Box<dyn audit::Source> = match (&args.server, &args.db, &args.export) {
        (Some(server), _, _) => Box::new(audit::UrlSource::new(server)),
        (_, Some(db), _) => Box::new(audit::DatabaseSource::open(db).map_err(|failure| anyhow::anyhow!("{failure}"))?),
        (_, _, Some(export)) => {
            Box::new(audit::ExportSource::open(export).map_err(|failure| anyhow::anyhow!("{failure}"))?)
        }
        _ => anyhow::bail!("say where the ledger is: --server, --db or --export"),
    };
    Ok(source)
}

fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let mut since = Vec::new();
    for path in &args.since {
        since.push(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let ledger_key = match &args.ledger_key {
        Some(text) => Some(
            base64_decode(text.trim())
                .and_then(|bytes| bytes.try_into().ok())
                .context("--ledger-key is not a 32-byte key in base64")?,
        ),
        None => None,
    };
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| anyhow::anyhow!("the random number generator failed: {error}"))?;
    let options = audit::Options { strict: args.strict, since, ledger_key, seed };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} leaves, {per_sec}, {eta} left")
            .expect("a valid progress template"),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let mut source = open_source(&args.source)?;
    let started = std::time::Instant::now();
    let result = audit::run(source.as_mut(), options, &progress).and_then(|(report, auditor)| {
        let derived = match &args.source.db {
            Some(db) => Some(audit::DatabaseSource::open(db)?.check_derived(&auditor, &report)?),
            None => None,
        };
        Ok((report, derived))
    });
    bar.finish_and_clear();
    match result {
        Ok((report, derived)) => {
            print!("{report}");
            if let Some(derived) = derived {
                print!("{derived}");
            }
            let seconds = started.elapsed().as_secs_f64();
            println!("audit passed in {seconds:.2} s ({:.0} leaves/s)", report.leaves as f64 / seconds.max(1e-9));
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            println!("AUDIT FAILED: {failure}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // Taken before the service starts: a SIGTERM that comes while it starts, or
        // just after it listens, then stops it cleanly instead of killing it.
        let mut stop_signals = StopSignals::take()?;
        let service = Service::start(config).await?;
        eprintln!("covoit is listening on http://{}", service.local_addr());
        stop_signals.wait().await;
        tracing::info!("stop signal received; finishing requests in flight");
        service.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM and SIGINT, handled by `serve` rather than ending the process.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn take() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// The command of a JSON object holding `type` and the type's own fields.
fn command_from_json(text: &str) -> anyhow::Result<CommandWire> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).context("--body must be a JSON object")?;
    for (field, value) in [("ledger", "l"), ("account", "a"), ("seq", "0"), ("not_after", "t")] {
        if object.insert(field.to_owned(), value.into()).is_some() {
            anyhow::bail!("--body gives \"{field}\"; it is filled in for you");
        }
    }
    let body: BodyWire =
        serde_json::from_value(serde_json::Value::Object(object)).context("--body is not a command")?;
    Ok(body.command)
}

/// Builds, signs and posts (or prints) one command; prints the service's reply.
fn send(signing: &Signing, default_account: &str, command: CommandWire) -> anyhow::Result<ExitCode> {
    send_as(signing, default_account, command, false)
}

#[derive(Args)]
struct LoadArgs {
    /// The service's address.
    #[arg(long, env = "COVOIT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The operator's key file, to approve and fund the accounts.
    #[arg(long, default_value = "keys/operator-demo.key")]
    operator_key: PathBuf,
    /// Accounts payments go between (each client pays from its own share).
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Concurrent clients, one run each: a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Payments per second all clients together could reach, at most: how many are
    /// signed before each run.
    #[arg(long, default_value_t = 20_000.0)]
    rate_ceiling: f64,
    /// Instead: post payments until the log holds this many leaves (to build a big
    /// ledger), with the last client count.
    #[arg(long)]
    stop_at_leaves: Option<u64>,
}

fn load(mut args: LoadArgs) -> anyhow::Result<ExitCode> {
    let operator = keys::read(&args.operator_key)?;
    eprintln!("setting up {} funded accounts…", args.accounts);
    let mut population = covoit::load::Population::create(&args.server, &operator, args.accounts)?;
    let mut clean = true;
    let payments = match args.stop_at_leaves {
        Some(leaves) => {
            let size = Client::new(&args.server).get_json("/healthz")?["size"].as_u64().unwrap_or(0);
            let last = *args.clients.last().context("at least one client count")?;
            args.clients = vec![last];
            Some(leaves.saturating_sub(size) as usize)
        }
        None => None,
    };
    for clients in args.clients {
        let plan = covoit::load::Plan {
            clients,
            duration: Duration::from_secs_f64(args.seconds),
            rate_ceiling: args.rate_ceiling,
            payments,
        };
        let outcome = population.run(&plan)?;
        println!("{}", outcome.summary());
        clean &= outcome.refused.is_empty() && outcome.broken == 0;
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn send_as(signing: &Signing, default_account: &str, command: CommandWire, by_desk: bool) -> anyhow::Result<ExitCode> {
    let key = keys::read(&signing.key)?;
    let account = match (&signing.account, default_account) {
        (Some(account), _) => account.clone(),
        (None, "") => anyhow::bail!("say which account signs, with --account <id>"),
        (None, default) => default.to_owned(),
    };
    let client = Client::new(&signing.server);
    let ledger = client.ledger_id().context("reading the ledger's id")?;
    let seq = match signing.seq {
        Some(seq) => seq,
        None => client.next_seq(&account).context("reading the account's next seq")?,
    };
    let not_after = Clock::System.now().plus_ms(i64::from(signing.valid_minutes) * 60_000);
    let by = by_desk.then(|| OPERATOR.to_owned());
    let body = BodyWire { ledger, account, seq: seq.to_string(), not_after: not_after.to_string(), by, command };
    let envelope = sign_body(&key, &body);
    if signing.print_only {
        println!("{}", serde_json::to_string(&envelope)?);
        return Ok(ExitCode::SUCCESS);
    }
    let reply = client.post_envelope(&envelope)?;
    let pretty = serde_json::from_str::<serde_json::Value>(&reply.body)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or(reply.body);
    if reply.status == 200 {
        // A registration's receipt goes to stderr, so that stdout is just the new id.
        if matches!(body.command, CommandWire::Register { .. }) {
            eprintln!("{pretty}")
        } else {
            println!("{pretty}")
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("refused ({}):\n{pretty}", reply.status);
        Ok(ExitCode::FAILURE)
    }
}
