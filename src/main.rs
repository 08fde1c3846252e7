//! The `covoit` command: the service (`serve`), key generation (`keygen`) and a signing
//! client for people and scripts (`register`, `approve`, `credit-set`, `issue`,
//! `transfer`, `redeem`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use covoit::client::Client;
use covoit::clock::Clock;
use covoit::config::{Config, ServeArgs};
use covoit::core::ids::{AccountId, OPERATOR};
use covoit::core::protocol::{BodyWire, base64_encode, sign_body};
use covoit::keys;
use covoit::service::Service;

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
            let code = send(&signing, OPERATOR, |common| BodyWire::Register {
                ledger: common.ledger,
                account: common.account,
                seq: common.seq,
                not_after: common.not_after,
                name,
            })?;
            if code == ExitCode::SUCCESS && !signing.print_only {
                println!("{account}");
            }
            Ok(code)
        }
        Commands::Approve { signing, target } => send(&signing, OPERATOR, |common| BodyWire::Approve {
            ledger: common.ledger,
            account: common.account,
            seq: common.seq,
            not_after: common.not_after,
            target,
        }),
        Commands::CreditSet { signing, target, floor } => send(&signing, OPERATOR, |common| BodyWire::CreditSet {
            ledger: common.ledger,
            account: common.account,
            seq: common.seq,
            not_after: common.not_after,
            target,
            floor,
        }),
        Commands::Issue { signing, to, amount, memo } => send(&signing, OPERATOR, |common| BodyWire::Issue {
            ledger: common.ledger,
            account: common.account,
            seq: common.seq,
            not_after: common.not_after,
            to,
            amount,
            memo,
        }),
        Commands::Transfer { signing, to, amount, memo } => send(&signing, "", |common| BodyWire::Transfer {
            ledger: common.ledger,
            account: common.account,
            seq: common.seq,
            not_after: common.not_after,
            to,
            amount,
            memo,
        }),
        Commands::Redeem { signing, amount, memo } => send(&signing, "", |common| BodyWire::Redeem {
            ledger: common.ledger,
            account: common.account,
            seq: common.seq,
            not_after: common.not_after,
            amount,
            memo,
        }),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let service = Service::start(config).await?;
        eprintln!("covoit is listening on http://{}", service.local_addr());
        wait_for_stop_signal().await?;
        tracing::info!("stop signal received; finishing requests in flight");
        service.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

/// The fields every body has, filled in for the command being built.
struct Common {
    ledger: String,
    account: String,
    seq: String,
    not_after: String,
}

/// Builds, signs and posts (or prints) one command; prints the service's reply.
fn send(signing: &Signing, default_account: &str, build: impl FnOnce(Common) -> BodyWire) -> anyhow::Result<ExitCode> {
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
    let body = build(Common { ledger, account, seq: seq.to_string(), not_after: not_after.to_string() });
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
        if matches!(body, BodyWire::Register { .. }) {
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
