//! SQLite storage: migrations, the single writer with group commit, and reads.
//!
//! One connection writes, owned by the writer thread ([`writer`]); any number read
//! beside it ([`read`]), which WAL allows without waiting. Every connection is opened
//! here, with its pragmas spelled out at the call site; [`backup`] copies a live
//! database with SQLite's online backup API.

pub mod backup;
pub mod checkpointer;
pub mod derived;
pub mod migrate;
pub mod read;
pub mod writer;

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::core::checkpoint;
use crate::core::ids::{AccountId, Seq, Text};
use crate::core::leaf::{self, Content};
use crate::core::ledger::{Account, State, Status};
use crate::core::merkle::{self, Frontier, Hash, Node, Nodes};
use crate::core::money::Floor;
use crate::core::policy::{Event, Genesis};
use crate::core::rides::RideObject;
use crate::core::time::Timestamp;

/// How long a connection waits for a lock before it gives up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Storage failures. Over HTTP each becomes 503 `storage_unavailable` (the request
/// may be retried; nothing was half-written), except at start-up, where it stops
/// the service with its message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database was written by a newer covoit (schema version {found}; this one knows up to {known})")]
    NewerSchema { found: i64, known: i64 },
    #[error("the database is inconsistent: {0}")]
    Corrupt(String),
    #[error("could not start a database thread: {0}")]
    Thread(std::io::Error),
    /// The derived tables (balances, histories, rides) have not caught up with the
    /// log within [`derived::READ_WAIT_MAX`].
    #[error("the balances and histories are {} leaves behind the log (at {indexed} of {committed}); try again shortly", committed - indexed)]
    Behind { indexed: u64, committed: u64 },
}

/// Opens the writing connection: WAL, and `synchronous=FULL` so that a commit is on
/// disk before it returns (a 2xx reply means durable).
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    open_wal_writer(path, Synchronous::Full)
}

/// How a writing connection syncs its commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit is flushed to disk before it returns (`fdatasync`, as
    /// `.cargo/config.toml` builds SQLite): for the log.
    Full,
    /// Commits are not fsynced (checkpoints are): consistent after a crash, but the
    /// last commits may be lost. For the derived tables, which the log rebuilds.
    Normal,
}

/// A writing connection in WAL mode. Both files are written mostly in order, so an
/// 8 MB page cache holds their working sets; the automatic checkpoint is only a
/// backstop at 16 MB of WAL, as [`checkpointer`] copies the log's pages in the
/// background.
pub fn open_wal_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!("{} refused WAL mode (it is in {mode} mode)", path.display())));
    }
    let synchronous = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    connection.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -8192;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA wal_autocheckpoint = 4000;"
    ))?;
    Ok(connection)
}

/// Opens a reading connection: read-only, so no read can ever write.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.execute_batch("PRAGMA query_only = ON;")?;
    Ok(connection)
}

/// Opens a reading connection to the log with the derived tables attached (as
/// `derived`), so that a query may join them; both read-only.
pub fn open_reader_with_derived(path: &Path, derived: &Path) -> Result<Connection, StoreError> {
    let connection = open_reader(path)?;
    let derived =
        derived.to_str().ok_or_else(|| StoreError::Corrupt(format!("the path {} is not UTF-8", derived.display())))?;
    // An attached file is opened with the main connection's flags: read-only too.
    connection.execute("ATTACH DATABASE ?1 AS derived", [derived])?;
    Ok(connection)
}

/// Whether the database already holds a ledger.
pub fn has_ledger(connection: &Connection) -> Result<bool, StoreError> {
    let exists: Option<i64> =
        connection.query_row("SELECT 1 FROM ledger WHERE id = 1", [], |row| row.get(0)).optional()?;
    Ok(exists.is_some())
}

/// Writes leaf 0, the ledger row and the first checkpoint of a new ledger, in one
/// transaction; the first state's derived tables are the caller's to write.
pub fn create_ledger(
    connection: &mut Connection,
    genesis: &Genesis,
    now: Timestamp,
    ledger_key: &SigningKey,
) -> Result<(State, Frontier), StoreError> {
    let state = State::from_genesis(genesis, now).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let event = Event::Genesis(Box::new(genesis.clone()));
    let bytes = leaf::encode(0, now, Content::Event(&event), &[]);
    let mut frontier = Frontier::new();
    let nodes = frontier.push(merkle::leaf_hash(&bytes));
    let note = checkpoint::sign_checkpoint(&genesis.ledger, frontier.size(), &frontier.root(), ledger_key);
    let transaction = connection.transaction()?;
    transaction.execute(
        "INSERT INTO leaves (leaf_index, bytes, kind, accepted_at) VALUES (0, ?1, ?2, ?3)",
        params![bytes, event.kind(), now.to_string()],
    )?;
    insert_nodes(&transaction, &nodes)?;
    transaction.execute(
        "INSERT INTO ledger (id, ledger_id, genesis, policy, size, last_accepted_at, issued, redeemed, checkpoint)
         VALUES (1, ?1, ?2, ?3, 1, ?4, 0, 0, ?5)",
        params![genesis.ledger, to_json(genesis), to_json(&genesis.policy), now.to_string(), note],
    )?;
    transaction.commit()?;
    Ok((state, frontier))
}

/// The bytes of leaf `index`.
pub fn leaf_bytes(connection: &Connection, index: u64) -> Result<Vec<u8>, StoreError> {
    let mut statement = connection.prepare_cached("SELECT bytes FROM leaves WHERE leaf_index = ?1")?;
    statement
        .query_row([to_i64(index)?], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("the log has no leaf {index}")))
}

/// The bytes of leaves `start..end`, all of them, in order.
pub fn leaves_between(connection: &Connection, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT leaf_index, bytes FROM leaves WHERE leaf_index >= ?1 AND leaf_index < ?2 ORDER BY leaf_index",
    )?;
    let rows = statement.query_map(params![to_i64(start)?, to_i64(end)?], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    let mut leaves = Vec::new();
    for (expected, row) in (start..).zip(rows) {
        let (index, bytes) = row?;
        if to_u64(index)? != expected {
            return Err(StoreError::Corrupt(format!("the log has no leaf {expected}")));
        }
        leaves.push(bytes);
    }
    if (leaves.len() as u64) != end - start {
        return Err(StoreError::Corrupt(format!("the log ends before leaf {end}")));
    }
    Ok(leaves)
}

/// Stored Merkle nodes, read through a connection.
pub struct SqlNodes<'a>(pub &'a Connection);

impl Nodes for SqlNodes<'_> {
    type Error = StoreError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let mut statement = self.0.prepare_cached("SELECT hash FROM merkle_hashes WHERE stored_index = ?1")?;
        let stored = to_i64(merkle::stored_index(level, index))?;
        let hash: Option<Vec<u8>> = statement.query_row([stored], |row| row.get(0)).optional()?;
        hash.and_then(|hash| Hash::try_from(hash).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("the Merkle node ({level}, {index}) is missing")))
    }
}

/// Stored hashes as schema versions before 5 kept them, keyed by (level, node_index):
/// read only to audit or check a database not yet migrated (an old backup).
struct NodesByLevel<'a>(&'a Connection);

impl Nodes for NodesByLevel<'_> {
    type Error = StoreError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let mut statement =
            self.0.prepare_cached("SELECT hash FROM merkle_nodes WHERE level = ?1 AND node_index = ?2")?;
        let hash: Option<Vec<u8>> = statement.query_row(params![level, to_i64(index)?], |row| row.get(0)).optional()?;
        hash.and_then(|hash| Hash::try_from(hash).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("the Merkle node ({level}, {index}) is missing")))
    }
}

/// The root of the first `size` leaves from the database's stored hashes, whichever
/// layout they are in: the auditor and the backup check read databases the service
/// has not migrated yet.
pub fn stored_root_at(connection: &Connection, size: u64) -> Result<Hash, StoreError> {
    let migrated: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'merkle_hashes')",
        [],
        |row| row.get(0),
    )?;
    if migrated {
        merkle::root_at(&SqlNodes(connection), size)
    } else {
        merkle::root_at(&NodesByLevel(connection), size)
    }
}

/// Writes nodes that just became complete, at the end of the stored order.
pub fn insert_nodes(connection: &Connection, nodes: &[Node]) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached("INSERT INTO merkle_hashes (stored_index, hash) VALUES (?1, ?2)")?;
    for node in nodes {
        statement.execute(params![to_i64(merkle::stored_index(node.level, node.index))?, node.hash.as_slice()])?;
    }
    Ok(())
}

/// The tree's right edge at start-up, after checking it against the stored
/// checkpoint. A log that has leaves without tree nodes (written before the tree
/// existed) gets them now, and a fresh checkpoint.
pub fn load_tree(connection: &mut Connection, state: &State, ledger_key: &SigningKey) -> Result<Frontier, StoreError> {
    let stored_hashes: i64 =
        connection.query_row("SELECT COALESCE(MAX(stored_index) + 1, 0) FROM merkle_hashes", [], |row| row.get(0))?;
    let hashed = merkle::size_of_stored(to_u64(stored_hashes)?).ok_or_else(|| {
        StoreError::Corrupt(format!("{stored_hashes} stored tree hashes end partway through a leaf's"))
    })?;
    let mut frontier = Frontier::load(&SqlNodes(connection), hashed)?;
    let stored_checkpoint: Option<String> =
        connection.query_row("SELECT checkpoint FROM ledger WHERE id = 1", [], |row| row.get(0))?;
    let origin = state.ledger().as_str();
    if frontier.size() == state.size() {
        if let Some(note) = &stored_checkpoint {
            let signed = checkpoint::open_checkpoint(note, origin, state.ledger_key()).map_err(corrupt)?;
            if signed.size != frontier.size() || signed.root != frontier.root() {
                return Err(StoreError::Corrupt("the stored checkpoint does not match the log's tree".into()));
            }
            return Ok(frontier);
        }
    }
    let transaction = connection.transaction()?;
    {
        let mut statement =
            transaction.prepare("SELECT bytes FROM leaves WHERE leaf_index >= ?1 ORDER BY leaf_index")?;
        let mut rows = statement.query([to_i64(hashed)?])?;
        while let Some(row) = rows.next()? {
            let bytes: Vec<u8> = row.get(0)?;
            insert_nodes(&transaction, &frontier.push(merkle::leaf_hash(&bytes)))?;
        }
    }
    if frontier.size() != state.size() {
        return Err(StoreError::Corrupt(format!("the tree has {} leaves, the log {}", frontier.size(), state.size())));
    }
    // Hashes rebuilt for a log that had a checkpoint (after a migration): they must
    // give the root that checkpoint signed, or the log is not what was signed.
    if let Some(note) = &stored_checkpoint {
        let signed = checkpoint::open_checkpoint(note, origin, state.ledger_key()).map_err(corrupt)?;
        if signed.size == frontier.size() && signed.root != frontier.root() {
            return Err(StoreError::Corrupt("the log's leaves do not give the root its checkpoint signed".into()));
        }
    }
    let note = checkpoint::sign_checkpoint(origin, frontier.size(), &frontier.root(), ledger_key);
    transaction.execute("UPDATE ledger SET checkpoint = ?1 WHERE id = 1", [note])?;
    transaction.commit()?;
    tracing::info!(size = frontier.size(), "built the Merkle tree and signed a checkpoint");
    Ok(frontier)
}

/// Every ride object, as stored.
pub fn load_ride_objects(connection: &Connection) -> Result<Vec<RideObject>, StoreError> {
    let mut statement = connection.prepare("SELECT kind, state FROM ride_objects")?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    let mut objects = Vec::new();
    for row in rows {
        let (kind, state) = row?;
        let object = ride_object_from_json(&kind, &state)?;
        objects.push(object);
    }
    Ok(objects)
}

/// A ride object from its row: the kind, and the state as JSON.
pub fn ride_object_from_json(kind: &str, state: &str) -> Result<RideObject, StoreError> {
    let wrapped = format!("{{\"kind\":{},\"object\":{state}}}", serde_json::to_string(kind).expect("a string"));
    serde_json::from_str(&wrapped)
        .map_err(|error| StoreError::Corrupt(format!("a stored {kind} does not parse: {error}")))
}

/// Writes the object a ride change left under `(kind, id)`, or deletes its row if it
/// is gone (a removed meeting point).
pub fn save_ride_object(
    connection: &Connection,
    kind: &str,
    id: &str,
    object: Option<&RideObject>,
) -> Result<(), StoreError> {
    let Some(object) = object else {
        connection
            .prepare_cached("DELETE FROM ride_objects WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind, id])?;
        return Ok(());
    };
    let (driver, passenger, state) = match object {
        RideObject::Point(point) => (None, None, serde_json::to_string(point)),
        RideObject::Offer(offer) => (Some(offer.driver.to_string()), None, serde_json::to_string(offer)),
        RideObject::Request(request) => (None, Some(request.passenger.to_string()), serde_json::to_string(request)),
        RideObject::Occurrence(occurrence) => (None, None, serde_json::to_string(occurrence)),
        RideObject::Booking(booking) => {
            (Some(booking.driver.to_string()), Some(booking.passenger.to_string()), serde_json::to_string(booking))
        }
    };
    let state = state.expect("ride objects serialise");
    let mut statement = connection.prepare_cached(
        "INSERT INTO ride_objects (kind, id, driver, passenger, state) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, id) DO UPDATE SET driver = excluded.driver, passenger = excluded.passenger,
             state = excluded.state",
    )?;
    statement.execute(params![kind, id, driver, passenger, state])?;
    Ok(())
}

/// Every account row, as stored.
pub fn load_accounts(connection: &Connection) -> Result<Vec<Account>, StoreError> {
    let mut statement = connection
        .prepare("SELECT account, key, name, status, balance, held, floor, next_seq, custodial FROM accounts")?;
    let rows = statement.query_map([], account_from_row)?.collect::<Result<Vec<Result<Account, StoreError>>, _>>()?;
    rows.into_iter().collect()
}

/// Inserts or replaces an account's row from the state; returns its `num`.
pub fn save_account(connection: &Connection, account: &Account) -> Result<i64, StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO accounts (account, key, name, status, balance, held, floor, next_seq, custodial)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (account) DO UPDATE SET key = excluded.key, name = excluded.name, status = excluded.status,
             balance = excluded.balance, held = excluded.held, floor = excluded.floor, next_seq = excluded.next_seq,
             custodial = excluded.custodial
         RETURNING num",
    )?;
    let num = statement.query_row(
        params![
            account.id.as_str(),
            account.key.as_ref().map(|key| key.as_slice()),
            account.name.as_ref().map(Text::as_str),
            account.status.as_str(),
            account.balance,
            account.held,
            account.floor.map(Floor::minor),
            to_i64(account.next_seq.value())?,
            account.custodial,
        ],
        |row| row.get(0),
    )?;
    Ok(num)
}

type AccountRow = (String, Option<Vec<u8>>, Option<String>, String, i64, i64, Option<i64>, i64, bool);

fn account_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Account, StoreError>> {
    let columns: AccountRow = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    );
    Ok(account_from_columns(columns))
}

fn account_from_columns(columns: AccountRow) -> Result<Account, StoreError> {
    let (id, key, name, status, balance, held, floor, next_seq, custodial) = columns;
    let key = key.map(|key| <[u8; 32]>::try_from(key.as_slice())).transpose().map_err(corrupt)?;
    Ok(Account {
        id: AccountId::parse(&id).map_err(corrupt)?,
        key,
        name: name.map(|name| Text::parse("name", &name)).transpose().map_err(corrupt)?,
        status: Status::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
        custodial,
        balance,
        held,
        floor: floor.map(Floor::from_minor).transpose().map_err(corrupt)?,
        next_seq: Seq::new(to_u64(next_seq)?),
    })
}

pub(crate) fn corrupt(error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    String::from_utf8(crate::core::canonical::to_canonical_vec(value)).expect("canonical JSON is UTF-8")
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("the stored {what} does not parse: {error}")))
}

/// SQLite integers are i64; our counters are u64 and never get near 2^63.
pub(crate) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} does not fit in SQLite")))
}

pub(crate) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("a stored count is negative ({value})")))
}
