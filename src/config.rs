//! Flags and environment variables of `covoit serve`, turned into a validated [`Config`].
//!
//! Every setting has a flag and a `COVOIT_*` environment variable, and a default that
//! runs Ayen's scheme from the current folder: `covoit.db` and `keys/` beside it.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::clock::Clock;
use crate::core::ids::LedgerId;
use crate::core::policy::Currency;
use crate::core::protocol;

/// `covoit serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "COVOIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The SQLite database file; created with a new ledger if missing.
    #[arg(long, env = "COVOIT_DB", default_value = "covoit.db")]
    pub db: PathBuf,
    /// The folder of the ledger's key (ledger.key) and, on a demo set-up, the operator's.
    #[arg(long, env = "COVOIT_KEYS", default_value = "keys")]
    pub keys: PathBuf,
    /// The operator's (the desk's) Ed25519 public key, base64. Without it, a new ledger
    /// gets a demo operator key in the keys folder, which belongs off the server.
    #[arg(long, env = "COVOIT_OPERATOR_KEY")]
    pub operator_key: Option<String>,
    /// The id of a new ledger (its checkpoints' origin); default `covoit/<random UUID>`.
    /// Ignored once the ledger exists.
    #[arg(long, env = "COVOIT_LEDGER_ID")]
    pub ledger_id: Option<String>,
    /// The currency's code, for a new ledger.
    #[arg(long, env = "COVOIT_CURRENCY", default_value = "Y'ACA")]
    pub currency: String,
    /// Let new accounts sign at once, without the desk's approval (new ledgers only).
    #[arg(long, env = "COVOIT_OPEN_REGISTRATION")]
    pub open_registration: bool,
    /// Requests a second one client address may make (in bursts of a second's worth); 0 for no limit.
    #[arg(long, env = "COVOIT_RATE_PER_CLIENT", default_value_t = crate::http::limit::RATE_PER_CLIENT_DEFAULT)]
    pub rate_per_client: u32,
    /// Connections the service holds at once; more are answered 503 and closed.
    #[arg(long, env = "COVOIT_CONNECTIONS_MAX", default_value_t = crate::http::server::CONNECTIONS_MAX)]
    pub connections_max: usize,
    /// Connections one client address may hold at once.
    #[arg(long, env = "COVOIT_CONNECTIONS_PER_CLIENT", default_value_t = crate::http::server::CONNECTIONS_PER_CLIENT_MAX)]
    pub connections_per_client: usize,
    /// Commands committed in one transaction at most (group commit); 1 commits each
    /// command on its own, for the benchmark that compares the two.
    #[arg(long, env = "COVOIT_BATCH_MAX", default_value_t = crate::store::writer::BATCH_COMMANDS_MAX, hide = true)]
    pub batch_max: usize,
    /// Longest a batch of commands waits for more, in microseconds from the previous
    /// batch, when more clients are connected than --commit-siblings; 0 never waits.
    #[arg(long, env = "COVOIT_COMMIT_WAIT_US", default_value_t = crate::store::writer::COMMIT_WAIT_DEFAULT.as_micros() as u64)]
    pub commit_wait_us: u64,
    /// Connected clients a batch of commands does not wait for (group commit).
    #[arg(long, env = "COVOIT_COMMIT_SIBLINGS", default_value_t = crate::store::writer::COMMIT_SIBLINGS_DEFAULT)]
    pub commit_siblings: usize,
    /// How the writer thread (the one every command passes through) is scheduled:
    /// real-time when the service may ask for it, else normal (the log says which).
    #[arg(long, env = "COVOIT_WRITER_PRIORITY", value_enum, default_value_t)]
    pub writer_priority: crate::store::writer::Priority,
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: PathBuf,
    pub keys: PathBuf,
    pub operator_key: Option<[u8; 32]>,
    pub ledger_id: Option<LedgerId>,
    pub currency: Currency,
    pub approval_required: bool,
    pub rate_per_client: u32,
    pub connections: crate::http::server::Limits,
    pub batch_max: usize,
    pub pacing: crate::store::writer::Pacing,
    pub writer_priority: crate::store::writer::Priority,
    pub clock: Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the operator key must be a 32-byte Ed25519 public key in standard base64 (as `covoit keygen` prints)")]
    OperatorKey,
    #[error("{0}")]
    LedgerId(String),
    #[error("the currency code must be 1 to 16 printable characters")]
    Currency,
}

impl Config {
    /// A configuration with Ayen's defaults around a database file and a key folder.
    pub fn new(database: PathBuf, keys: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database,
            keys,
            operator_key: None,
            ledger_id: None,
            currency: Currency::default(),
            approval_required: true,
            rate_per_client: crate::http::limit::RATE_PER_CLIENT_DEFAULT,
            connections: crate::http::server::Limits::default(),
            batch_max: crate::store::writer::BATCH_COMMANDS_MAX,
            pacing: crate::store::writer::Pacing::default(),
            writer_priority: crate::store::writer::Priority::default(),
            clock: Clock::System,
        }
    }

    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let operator_key = args
            .operator_key
            .map(|text| protocol::base64_decode(text.trim()).and_then(|bytes| bytes.try_into().ok()))
            .map(|key| key.ok_or(ConfigError::OperatorKey))
            .transpose()?;
        let ledger_id = args
            .ledger_id
            .map(|text| LedgerId::parse(&text).map_err(|error| ConfigError::LedgerId(error.to_string())))
            .transpose()?;
        let code_ok = (1..=16).contains(&args.currency.chars().count()) && !args.currency.chars().any(char::is_control);
        if !code_ok {
            return Err(ConfigError::Currency);
        }
        Ok(Config {
            listen: args.listen,
            database: args.db,
            keys: args.keys,
            operator_key,
            ledger_id,
            currency: Currency { code: args.currency, ..Currency::default() },
            approval_required: !args.open_registration,
            rate_per_client: args.rate_per_client,
            connections: crate::http::server::Limits {
                connections: args.connections_max,
                connections_per_client: args.connections_per_client,
                ..crate::http::server::Limits::default()
            },
            batch_max: args.batch_max,
            pacing: crate::store::writer::Pacing {
                wait: std::time::Duration::from_micros(args.commit_wait_us),
                siblings: args.commit_siblings,
            },
            writer_priority: args.writer_priority,
            clock: Clock::System,
        })
    }
}
