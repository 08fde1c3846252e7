//! The derived tables: accounts, postings, rides and the (account, seq) lookup, in a
//! SQLite file of their own beside the log, written behind it by one indexer thread.
//!
//! A 2xx means the command's leaf is durable in the log (the writer's commit, with
//! `synchronous=FULL`). Everything in this file is a function of the log, so it does
//! not have to reach the disk before the reply: the writer hands each committed
//! batch's changes to the indexer ([`Indexer`]), which folds whatever has queued into
//! one transaction here. That keeps the per-account indexes (random pages, several per
//! command) out of the commit that clients wait for.
//!
//! Reads that use these tables first wait until they cover every leaf committed before
//! the read began ([`Progress`]), so a client always sees its own writes. At start the
//! file is checked against the log (same ledger, same leaf at its size) and caught up
//! by replaying the leaves it lacks ([`catch_up`]); a missing, stale or foreign file
//! is rebuilt from the log.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::core::ids::{AccountId, Seq};
use crate::core::leaf::{self, OwnedContent, Posting};
use crate::core::ledger::{self, Account, State, Totals};
use crate::core::merkle::{self, Hash};
use crate::core::policy::{Genesis, Policy};
use crate::core::protocol::{self, SignedCommand};
use crate::core::rides::{RideObject, Rides};
use crate::core::time::Timestamp;
use crate::store::{self, StoreError, to_i64, to_u64};

/// The derived file's schema; a file with another version is rebuilt from the log.
pub const SCHEMA_VERSION: i64 = 2;
const SCHEMA: &str = include_str!("../../sql/derived/schema.sql");
/// Committed batches the indexer may fall behind by before the writer waits for it.
pub const QUEUE_BATCHES_MAX: usize = 4096;
/// Most leaves the indexer folds into one transaction.
pub const TRANSACTION_LEAVES_MAX: usize = 50_000;
/// How long the indexer lets committed changes gather before it writes them, unless
/// a read is waiting for them. One transaction for many batches touches each
/// account's pages once instead of once per batch.
pub const GATHER_MAX: Duration = Duration::from_millis(1000);
/// How often the indexer, while gathering, takes what has queued. It sleeps in
/// between: a waiting read wakes it at once, and the writer's batches do not (a
/// wake-up per batch, or per millisecond, cost more than the writing itself).
const GATHER_DRAIN: Duration = Duration::from_millis(50);
/// Leaves replayed per step when catching up at start.
pub const CATCH_UP_CHUNK: u64 = 8192;
/// How long a read waits for the derived tables to cover what was committed before
/// it began, before answering 503.
pub const READ_WAIT_MAX: Duration = Duration::from_secs(5);
/// Pause before the indexer tries a failed transaction again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The derived file beside a ledger's database: `covoit.db` → `covoit-derived.db`.
pub fn path_for(database: &Path) -> PathBuf {
    let stem = database.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match database.extension() {
        Some(extension) => format!("{stem}-derived.{}", extension.to_string_lossy()),
        None => format!("{stem}-derived"),
    };
    database.with_file_name(name)
}

/// Opens (or creates) the derived file for writing: WAL with `synchronous=NORMAL`,
/// which keeps it consistent through a crash but may lose its last transactions,
/// which the next start replays from the log. A file with another schema is emptied.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let connection = store::open_wal_writer(path, store::Synchronous::Normal)?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version != SCHEMA_VERSION {
        if version != 0 {
            tracing::warn!(version, "the derived tables have another schema; rebuilding them from the log");
        }
        reset(&connection)?;
    }
    Ok(connection)
}

/// Drops whatever the file holds and creates the tables, empty.
pub fn reset(connection: &Connection) -> Result<(), StoreError> {
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut sql = String::from("BEGIN;");
    for table in tables {
        sql.push_str(&format!("DROP TABLE \"{}\";", table.replace('"', "\"\"")));
    }
    sql.push_str(SCHEMA);
    sql.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"));
    connection.execute_batch(&sql)?;
    Ok(())
}

/// One leaf as the derived tables record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedLeaf {
    pub index: u64,
    /// The signer, seq and tx of a command; `None` for a server event.
    pub command: Option<(AccountId, Seq, [u8; 32])>,
    pub postings: Vec<Posting>,
}

/// What a run of leaves changed in the derived tables, and the state's totals after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub ledger_id: String,
    /// Leaves covered after this change.
    pub size: u64,
    pub last_leaf_hash: Hash,
    pub totals: Totals,
    pub policy: Policy,
    pub leaves: Vec<DerivedLeaf>,
    /// The accounts changed, as they are after the change: every account `leaves`
    /// name among them ([`write`] relies on it).
    pub accounts: BTreeMap<AccountId, Account>,
    /// The ride objects changed: `None` for one removed.
    pub rides: BTreeMap<(&'static str, String), Option<RideObject>>,
}

impl Derived {
    /// The totals of `state` and nothing changed yet: leaves, accounts and rides are
    /// added with [`Derived::touch`].
    pub fn new(state: &State, last_leaf_hash: Hash) -> Derived {
        Derived {
            ledger_id: state.ledger().as_str().to_owned(),
            size: state.size(),
            last_leaf_hash,
            totals: state.totals(),
            policy: state.policy().clone(),
            leaves: Vec::new(),
            accounts: BTreeMap::new(),
            rides: BTreeMap::new(),
        }
    }

    /// Everything `state` holds, as a first change to an empty file.
    pub fn everything(state: &State, last_leaf_hash: Hash) -> Derived {
        let mut derived = Derived::new(state, last_leaf_hash);
        derived.accounts = state.accounts().map(|account| (account.id.clone(), account.clone())).collect();
        derived.rides = state.rides().objects().map(|object| (object.key(), Some(object))).collect();
        derived
    }

    /// Records the current form of the accounts and ride objects named.
    pub fn touch<'a>(
        &mut self,
        state: &State,
        accounts: impl IntoIterator<Item = &'a AccountId>,
        rides: impl IntoIterator<Item = &'a (&'static str, String)>,
    ) {
        for id in accounts {
            let account = state.account(id).expect("touched accounts exist").clone();
            self.accounts.insert(id.clone(), account);
        }
        for (kind, id) in rides {
            self.rides.insert((kind, id.clone()), state.rides().object(kind, id));
        }
    }

    /// Folds a later change into this one: the later totals, accounts and rides win.
    pub fn absorb(&mut self, later: Derived) {
        assert!(later.size >= self.size, "changes arrive in log order");
        self.size = later.size;
        self.last_leaf_hash = later.last_leaf_hash;
        self.totals = later.totals;
        self.policy = later.policy;
        self.leaves.extend(later.leaves);
        self.accounts.extend(later.accounts);
        self.rides.extend(later.rides);
    }
}

/// Writes one change in one transaction, after checking that it continues the file.
pub fn write(connection: &mut Connection, derived: &Derived) -> Result<(), StoreError> {
    let transaction = connection.transaction()?;
    let covered: Option<i64> =
        transaction.query_row("SELECT size FROM derived WHERE id = 1", [], |row| row.get(0)).optional()?;
    let first = derived.leaves.first().map_or(derived.size, |leaf| leaf.index);
    if let Some(covered) = covered {
        if to_u64(covered)? != first {
            return Err(StoreError::Corrupt(format!(
                "the derived tables cover {covered} leaves but the next change starts at leaf {first}"
            )));
        }
    }
    // Accounts first: the commands and postings below name them by their `num`, which
    // saving an account returns (every account a leaf names was changed by it).
    let mut nums: HashMap<&str, i64> = HashMap::with_capacity(derived.accounts.len());
    for account in derived.accounts.values() {
        nums.insert(account.id.as_str(), store::save_account(&transaction, account)?);
    }
    {
        let mut command = transaction
            .prepare_cached("INSERT INTO commands (account, seq, leaf_index, tx) VALUES (?1, ?2, ?3, ?4)")?;
        let mut posting = transaction
            .prepare_cached("INSERT INTO postings (leaf_index, position, account, amount) VALUES (?1, ?2, ?3, ?4)")?;
        let num = |account: &AccountId| {
            nums.get(account.as_str())
                .copied()
                .expect("a leaf's signer and posting accounts are among those it touched")
        };
        for leaf in &derived.leaves {
            let index = to_i64(leaf.index)?;
            if let Some((account, seq, tx)) = &leaf.command {
                command.execute(params![num(account), to_i64(seq.value())?, index, tx.as_slice()])?;
            }
            for (position, entry) in leaf.postings.iter().enumerate() {
                posting.execute(params![index, position as i64, num(&entry.account), entry.amount_minor])?;
            }
        }
    }
    for ((kind, id), object) in &derived.rides {
        store::save_ride_object(&transaction, kind, id, object.as_ref())?;
    }
    let Totals { size, last_accepted_at, issued, redeemed } = &derived.totals;
    assert_eq!(*size, derived.size, "the totals are those after the change");
    transaction.execute(
        "INSERT INTO derived (id, ledger_id, size, last_leaf_hash, last_accepted_at, issued, redeemed, policy)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET size = excluded.size, last_leaf_hash = excluded.last_leaf_hash,
             last_accepted_at = excluded.last_accepted_at, issued = excluded.issued,
             redeemed = excluded.redeemed, policy = excluded.policy",
        params![
            derived.ledger_id,
            to_i64(*size)?,
            derived.last_leaf_hash.as_slice(),
            last_accepted_at.to_string(),
            issued,
            redeemed,
            store::to_json(&derived.policy)
        ],
    )?;
    if let Some(first) = derived.leaves.first() {
        assert_postings_balance(&transaction, first.index)?;
    }
    transaction.commit()?;
    Ok(())
}

/// The second check of the money, in SQL: every new leaf's postings sum to zero.
fn assert_postings_balance(connection: &Connection, first_index: u64) -> Result<(), StoreError> {
    let unbalanced: Option<(i64, i64)> = connection
        .query_row(
            "SELECT leaf_index, SUM(amount) FROM postings WHERE leaf_index >= ?1
             GROUP BY leaf_index HAVING SUM(amount) <> 0 LIMIT 1",
            [to_i64(first_index)?],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    assert_eq!(unbalanced, None, "the postings of every leaf sum to zero, read back from SQLite");
    Ok(())
}

/// How many leaves the derived tables cover; `None` for an empty file.
pub fn covered(connection: &Connection) -> Result<Option<u64>, StoreError> {
    let size: Option<i64> =
        connection.query_row("SELECT size FROM derived WHERE id = 1", [], |row| row.get(0)).optional()?;
    size.map(to_u64).transpose()
}

/// The state the derived tables hold, and the leaf hash they end with; `None` for an
/// empty file. `genesis` gives the founding facts (the stored policy replaces its own).
pub fn load(connection: &Connection, genesis: &Genesis) -> Result<Option<(State, Hash)>, StoreError> {
    let snapshot = connection.unchecked_transaction()?;
    type Row = (String, i64, Vec<u8>, String, i64, i64, String);
    let row: Option<Row> = snapshot
        .query_row(
            "SELECT ledger_id, size, last_leaf_hash, last_accepted_at, issued, redeemed, policy FROM derived
             WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?)),
        )
        .optional()?;
    let Some((ledger_id, size, last_leaf_hash, last_accepted_at, issued, redeemed, policy)) = row else {
        return Ok(None);
    };
    if ledger_id != genesis.ledger {
        return Err(StoreError::Corrupt(format!("the derived tables are those of another ledger ({ledger_id})")));
    }
    let mut genesis = genesis.clone();
    genesis.policy = store::from_json("derived policy", &policy)?;
    let last_accepted_at = Timestamp::parse_canonical(&last_accepted_at).map_err(store::corrupt)?;
    let totals = Totals { size: to_u64(size)?, last_accepted_at, issued, redeemed };
    let accounts = store::load_accounts(&snapshot)?;
    let rides = Rides::restore(store::load_ride_objects(&snapshot)?.into_iter());
    let last_leaf_hash = Hash::try_from(last_leaf_hash)
        .map_err(|_| StoreError::Corrupt("the derived tables' last leaf hash is not 32 bytes".into()))?;
    // restore() asserts the invariants; tables that break them were changed behind
    // the service's back, and refusing to start is the right answer.
    let state = State::restore(&genesis, accounts.into_iter(), rides, totals).map_err(store::corrupt)?;
    Ok(Some((state, last_leaf_hash)))
}

/// The stored (index, tx) of `account`'s command `seq`, if the derived tables have it.
pub fn find_command(
    connection: &Connection,
    account: &AccountId,
    seq: Seq,
) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    let mut statement =
        connection.prepare_cached(
        "SELECT leaf_index, tx FROM commands WHERE account = (SELECT num FROM accounts WHERE account = ?1) AND seq = ?2",
    )?;
    let row: Option<(i64, Vec<u8>)> = statement
        .query_row(params![account.as_str(), to_i64(seq.value())?], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(index, tx)| {
        let tx = <[u8; 32]>::try_from(tx.as_slice())
            .map_err(|_| StoreError::Corrupt("a stored tx is not 32 bytes".into()))?;
        Ok((to_u64(index)?, tx))
    })
    .transpose()
}

/// Replays leaves `state.size()..` of the log onto `state` through the state machine,
/// checking each leaf's postings, and returns what they changed. Signatures are
/// checked in batches: these leaves were verified one by one when they were accepted,
/// and `covoit audit` checks them all again.
pub fn replay(state: &mut State, leaves: &[Vec<u8>]) -> Result<Derived, StoreError> {
    let first = state.size();
    let corrupt = |index: u64, what: String| StoreError::Corrupt(format!("leaf {index} of the log {what}"));
    let mut decoded = Vec::with_capacity(leaves.len());
    let mut signed: Vec<SignedCommand> = Vec::new();
    for (offset, bytes) in leaves.iter().enumerate() {
        let index = first + offset as u64;
        let leaf = leaf::decode(bytes).map_err(|error| corrupt(index, format!("does not decode: {error}")))?;
        if leaf.index != index {
            return Err(corrupt(index, format!("says it is leaf {}", leaf.index)));
        }
        let event = match leaf.content {
            OwnedContent::Command(envelope) => {
                let command = protocol::check_envelope(envelope)
                    .map_err(|error| corrupt(index, format!("holds a refused command: {error}")))?;
                signed.push(command);
                None
            }
            OwnedContent::Event(event) => Some(event),
        };
        decoded.push((index, leaf.accepted_at, event, leaf.postings, merkle::leaf_hash(bytes)));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| StoreError::Corrupt(format!("no random numbers: {error}")))?;
    let (verified, refused) = protocol::verify_batch(signed, &seed);
    if let Some((_, error)) = refused {
        return Err(StoreError::Corrupt(format!("the log holds a command whose signature fails: {error}")));
    }
    let mut verified = verified.into_iter();
    let mut derived = Derived::new(state, [0; 32]);
    for (index, accepted_at, event, postings, hash) in decoded {
        let (outcome, command) = match event {
            Some(event) => {
                let outcome = ledger::apply_event(state, &event, accepted_at)
                    .map_err(|refusal| corrupt(index, format!("holds an event the state refuses: {refusal}")))?;
                (outcome, None)
            }
            None => {
                let command = verified.next().expect("one verified command per command leaf");
                let outcome = ledger::apply(state, &command, accepted_at)
                    .map_err(|refusal| corrupt(index, format!("holds a command the state refuses: {refusal}")))?;
                let body = command.body();
                (outcome, Some((body.account.clone(), body.seq, *command.tx())))
            }
        };
        if outcome.postings != postings {
            return Err(corrupt(index, "records other postings than its replay".into()));
        }
        derived.touch(state, &outcome.touched, &outcome.rides);
        derived.leaves.push(DerivedLeaf { index, command, postings });
        derived.last_leaf_hash = hash;
    }
    derived.size = state.size();
    derived.totals = state.totals();
    derived.policy = state.policy().clone();
    Ok(derived)
}

/// The log's genesis and its size, from the ledger row.
fn genesis_and_size(main: &Connection) -> Result<(Genesis, u64), StoreError> {
    let (genesis, size): (String, i64) =
        main.query_row("SELECT genesis, size FROM ledger WHERE id = 1", [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok((store::from_json("genesis", &genesis)?, to_u64(size)?))
}

/// Brings the derived file level with the log in `main` and returns the state at the
/// log's end: from what the file holds when it matches the log, else from the genesis.
pub fn catch_up(main: &Connection, derived: &mut Connection) -> Result<State, StoreError> {
    let (genesis, size) = genesis_and_size(main)?;
    let stored = match load(derived, &genesis) {
        Ok(Some((state, last_leaf_hash))) if state.size() <= size => {
            let bytes = store::leaf_bytes(main, state.size() - 1)?;
            if merkle::leaf_hash(&bytes) == last_leaf_hash {
                Some(state)
            } else {
                tracing::warn!("the derived tables follow another history than the log; rebuilding them");
                None
            }
        }
        Ok(Some((state, _))) => {
            tracing::warn!(covered = state.size(), size, "the derived tables are ahead of the log; rebuilding them");
            None
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "the derived tables cannot be read; rebuilding them from the log");
            None
        }
    };
    let mut state = match stored {
        Some(state) => state,
        None => {
            reset(derived)?;
            let bytes = store::leaf_bytes(main, 0)?;
            let genesis_leaf = leaf::decode(&bytes).map_err(store::corrupt)?;
            let state = State::from_genesis(&genesis, genesis_leaf.accepted_at).map_err(store::corrupt)?;
            write(derived, &Derived::everything(&state, merkle::leaf_hash(&bytes)))?;
            state
        }
    };
    let behind = size - state.size();
    if behind > 0 {
        let started = Instant::now();
        while state.size() < size {
            let leaves = store::leaves_between(main, state.size(), size.min(state.size() + CATCH_UP_CHUNK))?;
            let change = replay(&mut state, &leaves)?;
            write(derived, &change)?;
        }
        tracing::info!(leaves = behind, elapsed_ms = started.elapsed().as_millis() as u64, "derived tables caught up");
    }
    Ok(state)
}

/// The state at the log's end, read without writing: the derived file's state, then
/// the leaves it does not cover yet, replayed. The writer uses it after a failed
/// commit, when its own state may hold changes that were rolled back.
pub fn state_at_log_end(main: &Connection, derived: &Connection) -> Result<State, StoreError> {
    let (genesis, size) = genesis_and_size(main)?;
    let (mut state, _) =
        load(derived, &genesis)?.ok_or_else(|| StoreError::Corrupt("the derived tables are empty".into()))?;
    while state.size() < size {
        let leaves = store::leaves_between(main, state.size(), size.min(state.size() + CATCH_UP_CHUNK))?;
        replay(&mut state, &leaves)?;
    }
    Ok(state)
}

/// How far the log is committed and how far the derived tables cover it.
#[derive(Debug)]
pub struct Progress {
    committed: AtomicU64,
    indexed: Mutex<u64>,
    advanced: Condvar,
    /// Reads waiting for the indexer: while there are any, it writes at once.
    waiting: AtomicUsize,
    /// Wakes the gathering indexer when a read starts waiting (with `indexed`'s lock).
    nudge: Condvar,
}

impl Progress {
    /// Both at `size`: the state after a start, caught up.
    pub fn new(size: u64) -> Progress {
        Progress {
            committed: AtomicU64::new(size),
            indexed: Mutex::new(size),
            advanced: Condvar::new(),
            waiting: AtomicUsize::new(0),
            nudge: Condvar::new(),
        }
    }

    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub fn indexed(&self) -> u64 {
        *self.indexed.lock().expect("the progress lock")
    }

    /// The writer committed the log up to `size` leaves.
    pub fn set_committed(&self, size: u64) {
        self.committed.fetch_max(size, Ordering::AcqRel);
    }

    fn set_indexed(&self, size: u64) {
        let mut indexed = self.indexed.lock().expect("the progress lock");
        *indexed = (*indexed).max(size);
        self.advanced.notify_all();
    }

    /// The indexer sleeps for `timeout`, or until a read waits for it; true if one does.
    fn sleep_unless_waited_for(&self, timeout: Duration) -> bool {
        let indexed = self.indexed.lock().expect("the progress lock");
        let waiting = || self.waiting.load(Ordering::Acquire) > 0;
        if waiting() {
            return true;
        }
        let _ = self.nudge.wait_timeout_while(indexed, timeout, |_| !waiting()).expect("the progress lock");
        waiting()
    }

    /// Waits until the derived tables cover everything committed now.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<(), StoreError> {
        let target = self.committed();
        let indexed = self.indexed.lock().expect("the progress lock");
        if *indexed >= target {
            return Ok(());
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.nudge.notify_one();
        let (indexed, waited) =
            self.advanced.wait_timeout_while(indexed, timeout, |indexed| *indexed < target).expect("the progress lock");
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        if waited.timed_out() && *indexed < target {
            return Err(StoreError::Behind { indexed: *indexed, committed: target });
        }
        Ok(())
    }
}

/// The indexer thread: takes committed changes from the writer and writes them here.
pub struct Indexer {
    sender: Option<SyncSender<Derived>>,
    /// Set when the writer stops: a failing transaction is not tried again, even
    /// with what is queued behind it still unread.
    stopped: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub fn start(connection: Connection, progress: Arc<Progress>) -> std::io::Result<Indexer> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_BATCHES_MAX);
        let stopped = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("covoit-indexer".into()).spawn({
            let stopped = stopped.clone();
            move || run(connection, receiver, &progress, &stopped)
        })?;
        Ok(Indexer { sender: Some(sender), stopped, thread: Some(thread) })
    }

    /// Hands a committed change over; waits only if the indexer is far behind.
    pub fn send(&self, derived: Derived) {
        let sender = self.sender.as_ref().expect("the indexer runs until the writer stops");
        if sender.send(derived).is_err() {
            tracing::error!("the indexer has stopped; the derived tables will be caught up at the next start");
        }
    }

    /// Lets the indexer write what is queued, then waits for it to close its file.
    pub fn stop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the indexer thread ended with a panic");
            }
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut connection: Connection, receiver: Receiver<Derived>, progress: &Progress, stopped: &AtomicBool) {
    let mut failures = 0u32;
    while let Ok(mut pending) = receiver.recv() {
        // Gather until a read waits, the gathering time is up, the transaction is
        // big enough, or the writer has stopped.
        let started = Instant::now();
        while pending.leaves.len() < TRANSACTION_LEAVES_MAX {
            let Some(left) = GATHER_MAX.checked_sub(started.elapsed()) else {
                break;
            };
            if progress.sleep_unless_waited_for(left.min(GATHER_DRAIN)) || !take_queued(&receiver, &mut pending) {
                break;
            }
        }
        // What queued since the last drain belongs in this transaction too (a read
        // that woke the indexer waits for it).
        take_queued(&receiver, &mut pending);
        // A failed transaction (a full disk, say) is tried again with whatever has
        // queued meanwhile; reads wait, and answer 503 if it lasts.
        while let Err(error) = write(&mut connection, &pending) {
            if matches!(error, StoreError::Corrupt(_)) {
                tracing::error!(%error, "the derived tables do not continue the log; the next start rebuilds them");
                return;
            }
            failures += 1;
            if failures == 1 || failures.is_power_of_two() {
                tracing::error!(%error, failures, "writing the derived tables failed; trying again");
            }
            std::thread::sleep(RETRY_PAUSE);
            // Up to one transaction's worth: beyond it, what the writer commits waits
            // in the queue, and once the queue is full the writer waits too, so that
            // a long failure cannot fill the memory.
            if stopped.load(Ordering::Relaxed) || !take_queued(&receiver, &mut pending) {
                // The writer has stopped: what is still unwritten is replayed from the
                // log at the next start.
                tracing::warn!(
                    covered = progress.indexed(),
                    "the derived tables stay behind the log until the next start"
                );
                return;
            }
        }
        if failures > 0 {
            tracing::info!(failures, "the derived tables are written again");
            failures = 0;
        }
        progress.set_indexed(pending.size);
    }
    if let Err((_, error)) = connection.close() {
        tracing::error!(%error, "closing the derived tables failed");
    }
}

/// Absorbs what has queued into `pending`, up to [`TRANSACTION_LEAVES_MAX`] leaves;
/// false once the writer has stopped and nothing is left.
fn take_queued(receiver: &Receiver<Derived>, pending: &mut Derived) -> bool {
    while pending.leaves.len() < TRANSACTION_LEAVES_MAX {
        match receiver.try_recv() {
            Ok(later) => pending.absorb(later),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_file_sits_beside_the_database() {
        assert_eq!(path_for(Path::new("data/covoit.db")), PathBuf::from("data/covoit-derived.db"));
        assert_eq!(path_for(Path::new("ledger")), PathBuf::from("ledger-derived"));
    }

    /// A change of `leaves` leaves starting at `first`, with nothing else in it.
    fn change(first: u64, leaves: u64) -> Derived {
        let size = first + leaves;
        Derived {
            ledger_id: "covoit/test".into(),
            size,
            last_leaf_hash: [0; 32],
            totals: Totals { size, last_accepted_at: Timestamp::from_unix_ms(0), issued: 0, redeemed: 0 },
            policy: Policy::default(),
            leaves: (first..size).map(|index| DerivedLeaf { index, command: None, postings: Vec::new() }).collect(),
            accounts: BTreeMap::new(),
            rides: BTreeMap::new(),
        }
    }

    #[test]
    fn an_indexer_whose_writes_fail_stops_with_the_writer() {
        // A file without the derived tables: every write fails, and is tried again.
        let connection = Connection::open_in_memory().unwrap();
        let progress = Arc::new(Progress::new(0));
        let mut indexer = Indexer::start(connection, progress.clone()).unwrap();
        let batch = 5_000;
        // Two transactions' worth and more: the indexer holds one, the rest waits in
        // the queue.
        let batches = 2 * TRANSACTION_LEAVES_MAX as u64 / batch + 3;
        for number in 0..batches {
            indexer.send(change(number * batch, batch));
        }
        std::thread::sleep(RETRY_PAUSE * 3);
        assert_eq!(progress.indexed(), 0, "nothing written");
        // The queue is not empty and the indexer's transaction is full: stopping must
        // not wait for the writes to succeed.
        let (stopped, stop) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            indexer.stop();
            stopped.send(()).unwrap();
        });
        stop.recv_timeout(Duration::from_secs(10)).expect("the indexer stops with the writer");
    }

    #[test]
    fn a_read_waits_for_the_indexer_then_gives_up() {
        let progress = Arc::new(Progress::new(5));
        progress.wait_caught_up(Duration::ZERO).expect("caught up at start");
        progress.set_committed(9);
        assert!(matches!(
            progress.wait_caught_up(Duration::from_millis(10)),
            Err(StoreError::Behind { indexed: 5, committed: 9 })
        ));
        let indexer = progress.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            indexer.set_indexed(9);
        });
        progress.wait_caught_up(Duration::from_secs(10)).expect("the indexer caught up");
        thread.join().unwrap();
    }
}
