//! The offline auditor: verifies a ledger without trusting the server.
//!
//! It reads the leaves (from a service's URL, a database file or an export) and the
//! signed checkpoint, and checks, for every leaf in order: that it is canonical and
//! in its place; that its command's signature verifies over the stored bytes; that
//! the same pure state machine the server runs (`core::ledger::apply`) accepts it —
//! which checks the key registered at that point of the log, the seq, the ledger id,
//! `not_after`, floors and permissions — and produces exactly the postings the leaf
//! records. Then it checks the Merkle root against the checkpoint signed by the
//! ledger key, and older saved checkpoints against the log (history not rewritten).
//!
//! Signatures are checked in batches on both cores (see `protocol::verify_batch`);
//! `--strict` runs `verify_strict` on each one instead. Memory stays flat: the leaves
//! stream through in chunks, and only the state and the tree's right edge are kept.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use rusqlite::{Connection, params};

use crate::client::Client;
use crate::core::checkpoint::{self, Checkpoint};
use crate::core::ids::AccountId;
use crate::core::leaf::{self, Leaf, OwnedContent, Posting};
use crate::core::ledger::{self, State};
use crate::core::merkle::{self, Frontier, Hash};
use crate::core::money::format_minor;
use crate::core::policy::Event;
use crate::core::protocol::{self, SignedCommand, VerifiedCommand};
use crate::core::time::Timestamp;
use crate::store;

/// Leaves read and checked per round.
pub const CHUNK_LEAVES: usize = 8192;
/// The first line of an export file.
pub const EXPORT_FORMAT: &str = "covoit-export/1";

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The leaf it was found at, when it is about one leaf.
    pub leaf: Option<u64>,
    pub reason: String,
}

impl Failure {
    fn at(leaf: u64, reason: impl Into<String>) -> Failure {
        Failure { leaf: Some(leaf), reason: reason.into() }
    }

    fn ledger(reason: impl Into<String>) -> Failure {
        Failure { leaf: None, reason: reason.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.leaf {
            Some(leaf) => write!(formatter, "leaf {leaf}: {}", self.reason),
            None => formatter.write_str(&self.reason),
        }
    }
}

/// How to audit.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `verify_strict` on every signature instead of batches.
    pub strict: bool,
    /// Older signed checkpoints the log must be consistent with.
    pub since: Vec<String>,
    /// The ledger key the auditor expects (from a trusted source), base64-decoded.
    pub ledger_key: Option<[u8; 32]>,
    /// Randomness for the batch coefficients; pick it after the log exists.
    pub seed: [u8; 32],
}

/// What a passed audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ledger: String,
    pub currency: String,
    pub ledger_key: String,
    pub leaves: u64,
    pub commands: u64,
    pub members: u64,
    pub pending: u64,
    pub issued: i64,
    pub redeemed: i64,
    pub circulation: i64,
    pub checkpoint: Checkpoint,
    /// Sizes of the older checkpoints found consistent.
    pub consistent_with: Vec<u64>,
    pub strict: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "ledger          {}", self.ledger)?;
        writeln!(out, "ledger key      {}", self.ledger_key)?;
        writeln!(out, "leaves          {} ({} commands)", self.leaves, self.commands)?;
        writeln!(out, "members         {} ({} waiting for approval)", self.members, self.pending)?;
        let code = &self.currency;
        writeln!(
            out,
            "in circulation  {} {code} (issued {}, redeemed {})",
            format_minor(self.circulation),
            format_minor(self.issued),
            format_minor(self.redeemed)
        )?;
        writeln!(
            out,
            "checkpoint      size {}, root {}",
            self.checkpoint.size,
            protocol::base64_encode(&self.checkpoint.root)
        )?;
        for size in &self.consistent_with {
            writeln!(out, "consistent with the saved checkpoint of size {size}")?;
        }
        let signatures = if self.strict { "verify_strict on each" } else { "batches, verify_strict on failure" };
        writeln!(
            out,
            "checks passed   signatures ({signatures}), canonical leaves and bodies, sequence numbers, ledger id, \
             times, replayed postings, zero-sum, floors, reserve = issued - redeemed, Merkle root, checkpoint signature"
        )
    }
}

/// A leaf made ready in parallel: decoded, hashed, its command's signature checked.
struct Prepared {
    leaf: Decoded,
    hash: Hash,
    command: Option<VerifiedCommand>,
}

/// A leaf's fields, its envelope moved into its checked command.
struct Decoded {
    index: u64,
    accepted_at: Timestamp,
    content: Kind,
    postings: Vec<Posting>,
}

enum Kind {
    Command,
    Event(Box<Event>),
}

/// Replays a log, chunk by chunk.
pub struct Auditor {
    options: Options,
    state: Option<State>,
    frontier: Frontier,
    last_accepted_at: Timestamp,
    commands: u64,
    /// Roots at the sizes of the `since` checkpoints, filled in as the tree passes them.
    roots_at: BTreeMap<u64, Option<Hash>>,
    /// Σ of recorded postings per account, to compare with a database's own tables.
    posting_sums: HashMap<AccountId, (i64, u64)>,
}

impl Auditor {
    pub fn new(options: Options) -> Result<Auditor, Failure> {
        let mut roots_at = BTreeMap::new();
        for note in &options.since {
            roots_at.insert(claimed_size(note)?, None);
        }
        Ok(Auditor {
            options,
            state: None,
            frontier: Frontier::new(),
            last_accepted_at: Timestamp::from_unix_ms(i64::MIN),
            commands: 0,
            roots_at,
            posting_sums: HashMap::new(),
        })
    }

    /// The number of leaves checked so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Checks the next leaves of the log, in order.
    pub fn feed(&mut self, leaves: Vec<Vec<u8>>) -> Result<(), Failure> {
        let prepared = prepare_parallel(&leaves, self.frontier.size(), self.options.strict, &self.options.seed);
        self.replay_chunk(prepared)
    }

    /// Replays a prepared chunk: its ready leaves, then the failure found in it, if any.
    fn replay_chunk(&mut self, chunk: PreparedChunk) -> Result<(), Failure> {
        for prepared in chunk.ready {
            self.replay(prepared)?;
        }
        chunk.failure.map_or(Ok(()), Err)
    }

    /// Replays one prepared leaf through the state machine.
    fn replay(&mut self, prepared: Prepared) -> Result<(), Failure> {
        let Prepared { leaf, hash, command } = prepared;
        let index = self.frontier.size();
        if leaf.index != index {
            return Err(Failure::at(
                index,
                format!("the leaf says it is leaf {}; a leaf is missing or out of order", leaf.index),
            ));
        }
        if leaf.accepted_at < self.last_accepted_at {
            return Err(Failure::at(index, "its accepted_at is earlier than the leaf before it"));
        }
        let recorded_sum: i128 = leaf.postings.iter().map(|posting| i128::from(posting.amount_minor)).sum();
        if recorded_sum != 0 || leaf.postings.iter().any(|posting| posting.amount_minor == 0) {
            return Err(Failure::at(index, "its postings do not sum to zero (or one of them is zero)"));
        }
        match (&leaf.content, command) {
            (Kind::Event(event), None) if index == 0 => {
                let Event::Genesis(genesis) = &**event else {
                    return Err(Failure::at(0, "the log does not start with a genesis"));
                };
                let state = State::from_genesis(genesis, leaf.accepted_at)
                    .map_err(|error| Failure::at(0, error.to_string()))?;
                if let Some(expected) = self.options.ledger_key {
                    if state.ledger_key() != &expected {
                        return Err(Failure::at(0, "the genesis names another ledger key than the one expected"));
                    }
                }
                if !leaf.postings.is_empty() {
                    return Err(Failure::at(0, "the genesis moves money"));
                }
                self.state = Some(state);
            }
            (Kind::Event(event), None) => {
                let state =
                    self.state.as_mut().ok_or_else(|| Failure::at(index, "the log does not start with a genesis"))?;
                let outcome = ledger::apply_event(state, event, leaf.accepted_at).map_err(|refusal| {
                    Failure::at(index, format!("the state machine refuses this event ({}): {refusal}", refusal.code()))
                })?;
                if outcome.postings != leaf.postings {
                    return Err(Failure::at(
                        index,
                        format!(
                            "the recorded postings [{}] are not what the event produces [{}]",
                            describe(&leaf.postings),
                            describe(&outcome.postings)
                        ),
                    ));
                }
            }
            (Kind::Command, Some(command)) => {
                let state =
                    self.state.as_mut().ok_or_else(|| Failure::at(index, "the log does not start with a genesis"))?;
                // The server appends the events due at a time before the commands it
                // accepts at that time: none may be pending here.
                if let Some(withheld) = ledger::due_events(state, leaf.accepted_at).first() {
                    return Err(Failure::at(
                        index,
                        format!("a due \"{}\" event was withheld before this command", withheld.kind()),
                    ));
                }
                let outcome = ledger::apply(state, &command, leaf.accepted_at).map_err(|refusal| {
                    Failure::at(
                        index,
                        format!("the state machine refuses this command ({}): {refusal}", refusal.code()),
                    )
                })?;
                if outcome.postings != leaf.postings {
                    return Err(Failure::at(
                        index,
                        format!(
                            "the recorded postings [{}] are not what the command produces [{}]",
                            describe(&leaf.postings),
                            describe(&outcome.postings)
                        ),
                    ));
                }
                self.commands += 1;
            }
            _ => unreachable!("prepare() verifies exactly the command leaves"),
        }
        for posting in &leaf.postings {
            match self.posting_sums.get_mut(&posting.account) {
                Some(sums) => *sums = (sums.0 + posting.amount_minor, sums.1 + 1),
                None => {
                    self.posting_sums.insert(posting.account.clone(), (posting.amount_minor, 1));
                }
            }
        }
        self.last_accepted_at = leaf.accepted_at;
        self.frontier.push(hash);
        if let Some(root) = self.roots_at.get_mut(&self.frontier.size()) {
            *root = Some(self.frontier.root());
        }
        Ok(())
    }

    /// Checks the signed checkpoint against the replayed log, and the final state.
    pub fn finish(&self, checkpoint_note: &str) -> Result<Report, Failure> {
        let state = self.state.as_ref().ok_or_else(|| Failure::ledger("the log is empty"))?;
        let origin = state.ledger().as_str();
        let checkpoint = checkpoint::open_checkpoint(checkpoint_note, origin, state.ledger_key())
            .map_err(|error| Failure::ledger(format!("the checkpoint is refused: {error}")))?;
        if checkpoint.size != self.frontier.size() {
            return Err(Failure::ledger(format!(
                "the checkpoint is for {} leaves but the log has {}",
                checkpoint.size,
                self.frontier.size()
            )));
        }
        if checkpoint.root != self.frontier.root() {
            return Err(Failure::ledger("the Merkle root of the log differs from the root the checkpoint signs"));
        }
        let mut consistent_with = Vec::new();
        for note in &self.options.since {
            let old = checkpoint::open_checkpoint(note, origin, state.ledger_key())
                .map_err(|error| Failure::ledger(format!("a saved checkpoint is refused: {error}")))?;
            match self.roots_at.get(&old.size).copied().flatten() {
                Some(root) if root == old.root => consistent_with.push(old.size),
                Some(_) => {
                    return Err(Failure::ledger(format!(
                        "the log is not consistent with the saved checkpoint of size {}: its first {} leaves were rewritten",
                        old.size, old.size
                    )));
                }
                None => {
                    return Err(Failure::ledger(format!(
                        "the saved checkpoint of size {} is larger than the log ({} leaves): leaves were removed",
                        old.size,
                        self.frontier.size()
                    )));
                }
            }
        }
        check_final_state(state)?;
        let members = state.accounts().filter(|account| account.id.is_member());
        let (members, pending) = members.fold((0, 0), |(all, pending), account| {
            (all + 1, pending + u64::from(account.status == ledger::Status::Pending))
        });
        let totals = state.totals();
        Ok(Report {
            ledger: origin.to_owned(),
            currency: state.currency().code.clone(),
            ledger_key: protocol::base64_encode(state.ledger_key()),
            leaves: self.frontier.size(),
            commands: self.commands,
            members,
            pending,
            issued: totals.issued,
            redeemed: totals.redeemed,
            circulation: state.circulation(),
            checkpoint,
            consistent_with,
            strict: self.options.strict,
        })
    }
}

/// The invariants, checked as findings rather than assertions.
fn check_final_state(state: &State) -> Result<(), Failure> {
    let sum: i128 = state.accounts().map(|account| i128::from(account.balance)).sum();
    if sum != 0 {
        return Err(Failure::ledger("the balances do not sum to zero"));
    }
    for account in state.accounts() {
        if let Some(floor) = account.floor {
            if account.available() < floor.minor() {
                return Err(Failure::ledger(format!("account {} is below its floor", account.id)));
            }
        }
    }
    let totals = state.totals();
    if state.circulation() != totals.issued - totals.redeemed || state.circulation() < 0 {
        return Err(Failure::ledger("the reserve does not equal issued minus redeemed"));
    }
    Ok(())
}

/// Leaves decoded and verified, up to the first one that failed (if any).
struct PreparedChunk {
    ready: Vec<Prepared>,
    failure: Option<Failure>,
}

/// [`prepare`] on two threads, one half each.
fn prepare_parallel(leaves: &[Vec<u8>], first: u64, strict: bool, seed: &[u8; 32]) -> PreparedChunk {
    let middle = leaves.len() / 2;
    let (left, right) = leaves.split_at(middle);
    let (mut left, right) = std::thread::scope(|scope| {
        let right = scope.spawn(|| prepare(right, first + middle as u64, strict, seed));
        let left = prepare(left, first, strict, seed);
        (left, right.join().expect("a preparing thread panicked"))
    });
    if left.failure.is_none() {
        left.ready.extend(right.ready);
        left.failure = right.failure;
    }
    left
}

/// Decodes, hashes and verifies a run of leaves, stopping at the first that fails.
fn prepare(leaves: &[Vec<u8>], first: u64, strict: bool, seed: &[u8; 32]) -> PreparedChunk {
    let mut decoded = Vec::with_capacity(leaves.len());
    let mut signed = Vec::new();
    let mut failure = None;
    for (offset, bytes) in leaves.iter().enumerate() {
        let index = first + offset as u64;
        let checked = leaf::decode(bytes).map_err(|error| Failure::at(index, error.to_string())).and_then(|leaf| {
            let Leaf { index: claimed, accepted_at, content, postings } = leaf;
            let (content, command) = match content {
                OwnedContent::Command(envelope) => {
                    let command = protocol::check_envelope(envelope).map_err(|error| {
                        Failure::at(index, format!("its command is refused ({}): {error}", error.code()))
                    })?;
                    (Kind::Command, Some(command))
                }
                OwnedContent::Event(event) => (Kind::Event(event), None),
            };
            Ok((Decoded { index: claimed, accepted_at, content, postings }, command))
        });
        match checked {
            Ok((leaf, command)) => {
                if let Some(command) = command {
                    signed.push((decoded.len(), command));
                }
                decoded.push((leaf, merkle::leaf_hash(bytes)));
            }
            Err(found) => {
                failure = Some(found);
                break;
            }
        }
    }
    let positions: Vec<usize> = signed.iter().map(|(position, _)| *position).collect();
    let commands: Vec<SignedCommand> = signed.into_iter().map(|(_, command)| command).collect();
    let (verified, refused) =
        if strict { protocol::verify_each(commands) } else { protocol::verify_batch(commands, seed) };
    // A bad signature before a decoding failure is the first failure.
    let mut usable = decoded.len();
    if let Some((at, error)) = refused {
        usable = positions[at];
        let reason = format!("its signature is refused ({}): {error}", error.code());
        failure = Some(Failure::at(first + usable as u64, reason));
    }
    let mut verified = verified.into_iter();
    let mut next_signed = positions.into_iter().peekable();
    let ready = decoded
        .into_iter()
        .take(usable)
        .enumerate()
        .map(|(position, (leaf, hash))| {
            let command = if next_signed.peek() == Some(&position) {
                next_signed.next();
                Some(verified.next().expect("every command before the failure was verified"))
            } else {
                None
            };
            Prepared { leaf, hash, command }
        })
        .collect();
    PreparedChunk { ready, failure }
}

fn describe(postings: &[Posting]) -> String {
    let parts: Vec<String> =
        postings.iter().map(|posting| format!("{} {}", posting.account, format_minor(posting.amount_minor))).collect();
    parts.join(", ")
}

/// The size a note claims, read before its signature can be checked (the key comes
/// from the log's genesis); the signature is checked in [`Auditor::finish`].
fn claimed_size(note: &str) -> Result<u64, Failure> {
    note.lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .ok_or_else(|| Failure::ledger("a saved checkpoint is not a checkpoint note"))
}

/// Where the leaves and the checkpoint come from.
pub trait Source {
    /// The signed checkpoint to check the log against.
    fn checkpoint(&mut self) -> Result<String, Failure>;
    /// The next leaves, up to `size` in all; an empty vector at the end.
    fn next_leaves(&mut self, start: u64, size: u64) -> Result<Vec<Vec<u8>>, Failure>;
}

/// Audits everything `source` holds; `progress` is told how far it got. Returns the
/// report and the auditor, whose replayed state can be compared with a database's.
///
/// Chunks go through a pipeline: while one chunk is replayed on this thread, the next
/// is decoded and its signatures verified on two others.
pub fn run(
    source: &mut dyn Source,
    options: Options,
    progress: &dyn Fn(u64, u64),
) -> Result<(Report, Auditor), Failure> {
    let note = source.checkpoint()?;
    let size = claimed_size(&note)?;
    let (strict, seed) = (options.strict, options.seed);
    let mut auditor = Auditor::new(options)?;
    let mut fetched = 0u64;
    let mut pending: Option<PreparedChunk> = None;
    loop {
        let next = if fetched < size {
            let leaves = source.next_leaves(fetched, size)?;
            if leaves.is_empty() {
                return Err(Failure::ledger(format!(
                    "the log ends after {fetched} leaves, before the checkpoint's {size}"
                )));
            }
            Some(leaves)
        } else {
            None
        };
        let first = fetched;
        fetched += next.as_ref().map_or(0, |leaves| leaves.len() as u64);
        let (prepared, replayed) = std::thread::scope(|scope| {
            let preparing =
                next.as_ref().map(|leaves| scope.spawn(move || prepare_parallel(leaves, first, strict, &seed)));
            let replayed = pending.take().map_or(Ok(()), |chunk| auditor.replay_chunk(chunk));
            (preparing.map(|thread| thread.join().expect("a preparing thread panicked")), replayed)
        });
        replayed?;
        progress(auditor.size(), size);
        match prepared {
            Some(chunk) => pending = Some(chunk),
            None => break,
        }
    }
    let report = auditor.finish(&note)?;
    Ok((report, auditor))
}

/// A database file (with its derived tables, when they are beside it), read in one
/// read transaction so that it is one consistent state.
pub struct DatabaseSource {
    connection: Connection,
    has_derived: bool,
}

/// What [`DatabaseSource::check_derived`] could compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedCheck {
    /// The derived tables cover the whole log and say what it says.
    Compared { leaves: u64 },
    /// They cover only the first `covered` leaves (the service stopped before its
    /// indexer caught up); it replays the rest at its next start. Not compared.
    Behind { covered: u64, leaves: u64 },
    /// There are none beside the database (a backup copy, say); the service rebuilds
    /// them from the log.
    Missing,
}

impl fmt::Display for DerivedCheck {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DerivedCheck::Compared { leaves } => {
                writeln!(
                    out,
                    "derived tables (balances, histories, rides): cover all {leaves} leaves and match the replay"
                )
            }
            DerivedCheck::Behind { covered, leaves } => writeln!(
                out,
                "derived tables: cover {covered} of {leaves} leaves, so they were not compared \
                 (the service replays the rest when it starts)"
            ),
            DerivedCheck::Missing => {
                writeln!(out, "derived tables: none beside this database (the service rebuilds them from the log)")
            }
        }
    }
}

impl DatabaseSource {
    pub fn open(path: &Path) -> Result<DatabaseSource, Failure> {
        let derived = store::derived::path_for(path);
        let has_derived = derived.is_file();
        let opened =
            if has_derived { store::open_reader_with_derived(path, &derived) } else { store::open_reader(path) };
        let connection = opened.map_err(|error| Failure::ledger(format!("{}: {error}", path.display())))?;
        connection.execute_batch("BEGIN").map_err(sql_failure)?;
        Ok(DatabaseSource { connection, has_derived })
    }

    /// After a replay: the database's stored tree, and its derived tables (accounts,
    /// postings, rides) when they cover the whole log, must say what the log says.
    pub fn check_derived(&self, auditor: &Auditor, report: &Report) -> Result<DerivedCheck, Failure> {
        let state = auditor.state.as_ref().ok_or_else(|| Failure::ledger("the log is empty"))?;
        let stored_root = store::stored_root_at(&self.connection, report.leaves)
            .map_err(|error| Failure::ledger(format!("the stored Merkle tree cannot be read: {error}")))?;
        if stored_root != report.checkpoint.root {
            return Err(Failure::ledger(
                "the database's stored Merkle tree differs from the log's (its proofs would lie)",
            ));
        }
        if !self.has_derived {
            return Ok(DerivedCheck::Missing);
        }
        let covered = store::derived::covered(&self.connection)
            .map_err(|error| Failure::ledger(format!("the derived tables cannot be read: {error}")))?
            .unwrap_or(0);
        if covered > report.leaves {
            return Err(Failure::ledger(format!(
                "the derived tables claim {covered} leaves but the log has {}",
                report.leaves
            )));
        }
        if covered < report.leaves {
            return Ok(DerivedCheck::Behind { covered, leaves: report.leaves });
        }
        check_accounts(&self.connection, state)?;
        check_posting_sums(&self.connection, &auditor.posting_sums)?;
        check_rides(&self.connection, state)?;
        Ok(DerivedCheck::Compared { leaves: report.leaves })
    }

    fn leaves(&self, start: u64, size: u64) -> Result<Vec<Vec<u8>>, Failure> {
        let end = size.min(start + CHUNK_LEAVES as u64);
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT leaf_index, bytes FROM leaves WHERE leaf_index >= ?1 AND leaf_index < ?2 ORDER BY leaf_index",
            )
            .map_err(sql_failure)?;
        let rows = statement
            .query_map(params![start as i64, end as i64], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
            .map_err(sql_failure)?;
        let mut leaves = Vec::new();
        for (expected, row) in (start..).zip(rows) {
            let (index, bytes) = row.map_err(sql_failure)?;
            if index != expected as i64 {
                return Err(Failure::at(
                    expected,
                    format!("the database has no leaf {expected} (the next is {index})"),
                ));
            }
            leaves.push(bytes);
        }
        Ok(leaves)
    }
}

impl Source for DatabaseSource {
    fn checkpoint(&mut self) -> Result<String, Failure> {
        let note: Option<String> = self
            .connection
            .query_row("SELECT checkpoint FROM ledger WHERE id = 1", [], |row| row.get(0))
            .map_err(sql_failure)?;
        note.ok_or_else(|| Failure::ledger("the database has no signed checkpoint"))
    }

    fn next_leaves(&mut self, start: u64, size: u64) -> Result<Vec<Vec<u8>>, Failure> {
        self.leaves(start, size)
    }
}

fn check_accounts(connection: &Connection, state: &State) -> Result<(), Failure> {
    let stored =
        store::load_accounts(connection).map_err(|error| Failure::ledger(format!("the accounts table: {error}")))?;
    if stored.len() != state.accounts().count() {
        return Err(Failure::ledger(format!(
            "the accounts table has {} accounts, the log {}",
            stored.len(),
            state.accounts().count()
        )));
    }
    for account in stored {
        match state.account(&account.id) {
            Some(replayed) if *replayed == account => {}
            Some(replayed) => {
                return Err(Failure::ledger(format!(
                    "the stored account {} (balance {}, seq {}) differs from the log's (balance {}, seq {})",
                    account.id,
                    format_minor(account.balance),
                    account.next_seq,
                    format_minor(replayed.balance),
                    replayed.next_seq
                )));
            }
            None => return Err(Failure::ledger(format!("the stored account {} is not in the log", account.id))),
        }
    }
    Ok(())
}

fn check_rides(connection: &Connection, state: &State) -> Result<(), Failure> {
    let stored =
        store::load_ride_objects(connection).map_err(|error| Failure::ledger(format!("the rides table: {error}")))?;
    let mut replayed: Vec<_> = state.rides().objects().collect();
    let mut stored = stored;
    let key = |object: &crate::core::rides::RideObject| object.key();
    replayed.sort_by_key(key);
    stored.sort_by_key(key);
    if let Some((kind, id)) = replayed.iter().zip(&stored).find(|(a, b)| a != b).map(|(a, _)| a.key()) {
        return Err(Failure::ledger(format!("the stored {kind} {id} differs from the log's")));
    }
    if replayed.len() != stored.len() {
        return Err(Failure::ledger(format!(
            "the rides table holds {} objects, the log {}",
            stored.len(),
            replayed.len()
        )));
    }
    Ok(())
}

fn check_posting_sums(connection: &Connection, replayed: &HashMap<AccountId, (i64, u64)>) -> Result<(), Failure> {
    let mut statement = connection
        .prepare(
            "SELECT p.account, a.account, SUM(p.amount), COUNT(*)
               FROM postings p LEFT JOIN accounts a ON a.num = p.account
              GROUP BY p.account ORDER BY a.account IS NOT NULL, p.account",
        )
        .map_err(sql_failure)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?))
        })
        .map_err(sql_failure)?;
    let mut seen = 0;
    for row in rows {
        let (num, account, sum, count) = row.map_err(sql_failure)?;
        let account = account.ok_or_else(|| Failure::ledger(format!("the postings table names no account {num}")))?;
        let id = AccountId::parse(&account)
            .map_err(|_| Failure::ledger(format!("the postings table names \"{account}\"")))?;
        if replayed.get(&id) != Some(&(sum, count as u64)) {
            return Err(Failure::ledger(format!("the postings table's entries for {account} differ from the log's")));
        }
        seen += 1;
    }
    if seen != replayed.len() {
        return Err(Failure::ledger("the postings table lacks some of the log's postings"));
    }
    Ok(())
}

fn sql_failure(error: rusqlite::Error) -> Failure {
    Failure::ledger(format!("reading the database failed: {error}"))
}

/// A running service, read over HTTP.
pub struct UrlSource {
    client: Client,
}

impl UrlSource {
    pub fn new(server: &str) -> UrlSource {
        UrlSource { client: Client::new(server) }
    }
}

impl Source for UrlSource {
    fn checkpoint(&mut self) -> Result<String, Failure> {
        let reply = self.client.get("/v1/checkpoint").map_err(|error| Failure::ledger(error.to_string()))?;
        if reply.status != 200 {
            return Err(Failure::ledger(format!("the service answered {} for its checkpoint", reply.status)));
        }
        Ok(reply.body)
    }

    fn next_leaves(&mut self, start: u64, size: u64) -> Result<Vec<Vec<u8>>, Failure> {
        let end = size.min(start + CHUNK_LEAVES as u64);
        let mut leaves = Vec::new();
        while start + (leaves.len() as u64) < end {
            let from = start + leaves.len() as u64;
            let reply = self
                .client
                .get(&format!("/v1/log?start={from}&end={end}"))
                .map_err(|error| Failure::ledger(error.to_string()))?;
            if reply.status != 200 {
                return Err(Failure::ledger(format!("the service answered {} for leaves from {from}", reply.status)));
            }
            let before = leaves.len();
            leaves.extend(reply.body.lines().map(|line| line.as_bytes().to_vec()));
            if leaves.len() == before {
                break;
            }
        }
        Ok(leaves)
    }
}

/// An export file: a header line, then one leaf per line.
pub struct ExportSource {
    checkpoint: String,
    lines: std::io::Lines<BufReader<std::fs::File>>,
}

impl ExportSource {
    pub fn open(path: &Path) -> Result<ExportSource, Failure> {
        let file =
            std::fs::File::open(path).map_err(|error| Failure::ledger(format!("{}: {error}", path.display())))?;
        let mut lines = BufReader::new(file).lines();
        let header =
            lines.next().and_then(Result::ok).ok_or_else(|| Failure::ledger(format!("{} is empty", path.display())))?;
        let checkpoint = parse_export_header(&header)?;
        Ok(ExportSource { checkpoint, lines })
    }
}

impl Source for ExportSource {
    fn checkpoint(&mut self) -> Result<String, Failure> {
        Ok(self.checkpoint.clone())
    }

    fn next_leaves(&mut self, start: u64, size: u64) -> Result<Vec<Vec<u8>>, Failure> {
        let wanted = (size - start).min(CHUNK_LEAVES as u64) as usize;
        let mut leaves = Vec::with_capacity(wanted);
        for line in self.lines.by_ref().take(wanted) {
            leaves.push(
                line.map_err(|error| Failure::ledger(format!("reading the export failed: {error}")))?.into_bytes(),
            );
        }
        Ok(leaves)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportHeader {
    format: String,
    checkpoint: String,
}

fn parse_export_header(line: &str) -> Result<String, Failure> {
    let header: ExportHeader = serde_json::from_str(line).map_err(|_| {
        Failure::ledger(format!("this is not a covoit export (its first line is not a {EXPORT_FORMAT} header)"))
    })?;
    if header.format != EXPORT_FORMAT {
        return Err(Failure::ledger(format!("export format \"{}\" is not {EXPORT_FORMAT}", header.format)));
    }
    Ok(header.checkpoint)
}

/// Writes an export of what `source` holds: the header with the checkpoint, then the
/// leaves it covers. Returns the number of leaves written.
pub fn export(source: &mut dyn Source, out: &mut dyn Write) -> Result<u64, Failure> {
    let checkpoint = source.checkpoint()?;
    let size = claimed_size(&checkpoint)?;
    let header = ExportHeader { format: EXPORT_FORMAT.to_owned(), checkpoint };
    let write_failure = |error: std::io::Error| Failure::ledger(format!("writing the export failed: {error}"));
    let header = serde_json::to_string(&header).expect("a header serialises");
    writeln!(out, "{header}").map_err(write_failure)?;
    let mut written = 0;
    while written < size {
        let leaves = source.next_leaves(written, size)?;
        if leaves.is_empty() {
            return Err(Failure::ledger(format!(
                "the log ends after {written} leaves, before the checkpoint's {size}"
            )));
        }
        for leaf in &leaves {
            out.write_all(leaf).and_then(|()| out.write_all(b"\n")).map_err(write_failure)?;
        }
        written += leaves.len() as u64;
    }
    out.flush().map_err(write_failure)?;
    Ok(written)
}
