//! Starting and stopping the service: keys, database, writer, HTTP server.
//!
//! [`Service::start`] opens (or creates) everything and listens; [`Service::stop`]
//! stops accepting connections, lets requests in flight finish, lets the writer
//! commit what is queued and closes the database. `main` calls these on
//! SIGINT/SIGTERM; the integration tests call them directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::{Semaphore, broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::core::board::{Board, Notification};
use crate::core::ids::LedgerId;
use crate::core::policy::{Genesis, Policy};
use crate::core::protocol::base64_encode;
use crate::http::{self, App, READS_CONCURRENT_MAX};
use crate::keys::{self, KeyError};
use crate::store::checkpointer::Checkpointer;
use crate::store::derived::{self, Derived, Indexer, Progress};
use crate::store::read::{LiveAccounts, Reader};
use crate::store::writer::{AfterCommit, Derivation, Ledger, WriterHandle};
use crate::store::{self, StoreError, migrate};

/// How often the timer asks for due server events.
pub const TICK_INTERVAL: Duration = Duration::from_secs(30);
/// Notifications waiting for slow streams; a stream that falls further behind
/// misses some and is told to reload.
pub const NOTIFICATIONS_QUEUED_MAX: usize = 1024;

/// How long requests in flight may take to finish once a stop is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The ledger's key, which signs checkpoints, in the keys folder.
pub const LEDGER_KEY_FILE: &str = "ledger.key";
/// The demo operator key written when no operator key is configured.
pub const DEMO_OPERATOR_KEY_FILE: &str = "operator-demo.key";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the database holds a ledger but its key {0} is missing; restore the key from your backup (a new key cannot sign for this ledger)"
    )]
    LedgerKeyMissing(PathBuf),
    #[error("{0} is not the key of the ledger in this database")]
    LedgerKeyMismatch(PathBuf),
    #[error("the configured operator key differs from the ledger's ({0}); changing the operator key is not supported")]
    OperatorKeyMismatch(String),
    #[error("could not listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("could not start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the database {path} cannot be written ({source}); covoit needs to write it and the files beside it")]
    NotWritable { path: PathBuf, source: std::io::Error },
}

/// A running service.
pub struct Service {
    local_addr: SocketAddr,
    ledger_id: LedgerId,
    app: Arc<App>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
    timer: JoinHandle<()>,
    checkpointer: Option<Checkpointer>,
}

/// A read-only database (its file system mounted read-only, say) is said plainly,
/// rather than as SQLite's "unable to open database file".
fn check_writable(database: &Path) -> Result<(), StartError> {
    let folder = match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let opened = if database.exists() {
        std::fs::OpenOptions::new().append(true).open(database).map(drop)
    } else {
        tempfile_probe(folder)
    };
    opened.map_err(|source| StartError::NotWritable { path: database.to_owned(), source })
}

/// Whether a new file can be made in `folder` (removed at once).
fn tempfile_probe(folder: &Path) -> std::io::Result<()> {
    if !folder.exists() {
        return Ok(()); // SQLite will say that the folder is missing.
    }
    let probe = folder.join(format!(".covoit-write-probe-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

impl Service {
    /// Opens or creates the ledger and starts listening.
    pub async fn start(config: Config) -> Result<Service, StartError> {
        let Config { database, keys: key_folder, clock, .. } = &config;
        check_writable(database)?;
        let mut connection = store::open_writer(database)?;
        migrate::migrate(&mut connection, &clock.now().to_string())?;
        let derived_path = derived::path_for(database);
        let mut derived_connection = derived::open_writer(&derived_path)?;
        let (ledger, ledger_key) = if store::has_ledger(&connection)? {
            open_existing(&mut connection, &mut derived_connection, &config)?
        } else {
            let (genesis, ledger_key) = new_genesis(&config)?;
            tracing::info!(ledger = %genesis.ledger, "created a new ledger");
            let (state, frontier) = store::create_ledger(&mut connection, &genesis, clock.now(), &ledger_key)?;
            // Whatever an earlier ledger left in the derived file goes.
            derived::reset(&derived_connection)?;
            derived::write(&mut derived_connection, &Derived::everything(&state, frontier.root()))?;
            (Ledger { state, frontier }, ledger_key)
        };
        let progress = Arc::new(Progress::new(ledger.state.size()));
        let live = Arc::new(LiveAccounts::default());
        live.update(ledger.state.accounts());
        let derivation = Derivation {
            indexer: Indexer::start(derived_connection, progress.clone()).map_err(StartError::Thread)?,
            progress: progress.clone(),
            reader: store::open_reader(&derived_path)?,
            live: live.clone(),
        };
        let ledger_id = ledger.state.ledger().clone();
        tracing::info!(ledger = %ledger_id, size = ledger.state.size(), keys = %key_folder.display(), "ledger open");
        let board = Arc::new(RwLock::new(Board::build(&ledger.state)));
        let (notifications, _) = broadcast::channel(NOTIFICATIONS_QUEUED_MAX);
        let after_commit = board_keeper(board.clone(), notifications.clone(), clock.clone());
        let writer = WriterHandle::start(
            connection,
            ledger,
            ledger_key,
            clock.clone(),
            config.batch_max,
            config.pacing,
            config.writer_priority,
            after_commit,
            derivation,
        )
        .map_err(StartError::Thread)?;
        let checkpointer = Checkpointer::start(database)?;
        let reader = Arc::new(Reader::new(database.clone(), derived_path, progress, live));
        let app = Arc::new(App {
            writer,
            reader,
            reads: Semaphore::new(READS_CONCURRENT_MAX),
            board,
            notifications,
            streams: Arc::new(http::server::Counts::default()),
            clock: clock.clone(),
            stopping: tokio::sync::watch::channel(false).0,
            limiter: crate::http::limit::RateLimiter::new(config.rate_per_client),
        });
        // Server events (rides settling or expiring) are due with time, not only with
        // commands: a timer asks the writer for them. At start too, so that what
        // fell due while the service was stopped is done at once.
        app.writer.try_tick();
        let ticking = app.clone();
        let timer = tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK_INTERVAL);
            loop {
                interval.tick().await;
                ticking.writer.try_tick();
            }
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen { address: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| StartError::Listen { address: config.listen, source })?;
        let (shutdown, stop_signal) = oneshot::channel::<()>();
        let server = tokio::spawn(http::server::serve(
            listener,
            http::routes(app.clone()),
            config.connections,
            app.writer.senders().clone(),
            async {
                let _ = stop_signal.await;
            },
        ));
        tracing::info!(address = %local_addr, "listening");
        Ok(Service { local_addr, ledger_id, app, shutdown, server, timer, checkpointer: Some(checkpointer) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn ledger_id(&self) -> &LedgerId {
        &self.ledger_id
    }

    /// Appends the server events due now and waits for them: what the timer does
    /// every [`TICK_INTERVAL`], for tests that move the clock themselves.
    pub async fn tick(&self) {
        self.app.writer.tick().await;
    }

    /// Stops cleanly: no new connections, requests in flight finish (within
    /// [`SHUTDOWN_GRACE`]), queued commands commit, the database closes.
    pub async fn stop(mut self) {
        self.timer.abort();
        self.app.stopping.send_replace(true);
        let _ = self.shutdown.send(());
        let mut server = self.server;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
            tracing::warn!("requests still open after the grace period were cut off");
            server.abort();
        }
        self.app.reader.close_idle();
        drop(self.checkpointer.take());
        self.app.writer.stop().await;
        tracing::info!("stopped");
    }
}

/// The writer's after-commit hook: refreshes the ride board and tells the live
/// streams what changed.
fn board_keeper(
    board: Arc<RwLock<Board>>,
    notifications: broadcast::Sender<Notification>,
    clock: Clock,
) -> AfterCommit {
    Box::new(move |state, changes| {
        let heard =
            board.write().expect("the board's lock").refresh(state, &changes.rides, changes.policy, clock.now());
        for notification in heard {
            // Nobody listening is fine.
            let _ = notifications.send(notification);
        }
    })
}

/// Checks that the keys and configuration match the ledger found in the database,
/// and loads the state (catching the derived tables up with the log) and the tree.
fn open_existing(
    connection: &mut rusqlite::Connection,
    derived: &mut rusqlite::Connection,
    config: &Config,
) -> Result<(Ledger, SigningKey), StartError> {
    let state = derived::catch_up(connection, derived)?;
    let key_path = config.keys.join(LEDGER_KEY_FILE);
    if !key_path.exists() {
        return Err(StartError::LedgerKeyMissing(key_path));
    }
    let ledger_key = keys::read(&key_path)?;
    if ledger_key.verifying_key().as_bytes() != state.ledger_key() {
        return Err(StartError::LedgerKeyMismatch(key_path));
    }
    if let Some(operator_key) = config.operator_key {
        if &operator_key != state.operator_key() {
            return Err(StartError::OperatorKeyMismatch(base64_encode(state.operator_key())));
        }
    }
    let frontier = store::load_tree(connection, &state, &ledger_key)?;
    Ok((Ledger { state, frontier }, ledger_key))
}

/// The founding facts of a new ledger; creates its key and, if needed, a demo operator key.
fn new_genesis(config: &Config) -> Result<(Genesis, SigningKey), StartError> {
    let (ledger_key, _) = keys::read_or_create(&config.keys.join(LEDGER_KEY_FILE))?;
    let operator_key = match config.operator_key {
        Some(key) => key,
        None => demo_operator_key(&config.keys)?.verifying_key().to_bytes(),
    };
    let ledger = match &config.ledger_id {
        Some(ledger) => ledger.to_string(),
        None => format!("covoit/{}", uuid::Uuid::new_v4()),
    };
    let genesis = Genesis {
        ledger,
        currency: config.currency.clone(),
        ledger_key: base64_encode(ledger_key.verifying_key().as_bytes()),
        operator_key: base64_encode(&operator_key),
        policy: Policy { approval_required: config.approval_required, ..Policy::default() },
    };
    Ok((genesis, ledger_key))
}

fn demo_operator_key(folder: &Path) -> Result<SigningKey, StartError> {
    let path = folder.join(DEMO_OPERATOR_KEY_FILE);
    let (key, created) = keys::read_or_create(&path)?;
    let public = base64_encode(key.verifying_key().as_bytes());
    let warning = format!(
        "WARNING: no operator key was configured, so this ledger's operator (the desk) uses the demo key {} \
         (public key {public}). Whoever holds that file can issue money: for real use, keep the operator key on \
         the desk's own machine, not on the server, and start a new ledger with --operator-key.",
        path.display()
    );
    if created {
        eprintln!("{warning}");
    }
    tracing::warn!("{warning}");
    Ok(key)
}
