//! The single writer: one thread that owns the write connection and the state, and
//! commits commands in batches (group commit).
//!
//! Handlers check envelopes on any core, signatures included but for their last step,
//! then queue the [`PreparedCommand`] here. The writer takes everything queued (up to
//! [`BATCH_COMMANDS_MAX`]), finishes the signatures together (one field inversion
//! for the batch, where each alone would take one), applies each command
//! with the pure state machine inside one SQLite transaction, commits it (one fsync
//! for the batch) and only then answers each waiting request. While it commits, new
//! commands queue up and form the next batch, so the fsync cost is shared and no lock
//! is held across an fsync per request. With many clients connected, a batch also
//! waits a little for more of them ([`Pacing`]). Reads never go through here.
//!
//! A batch's transaction holds only the log: its leaves, the new Merkle nodes and the
//! ledger row with the new checkpoint. What the batch changed in balances, histories
//! and rides goes to the indexer after the commit ([`derived`]).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::core::canonical;
use crate::core::checkpoint;
use crate::core::ids::{AccountId, Seq};
use crate::core::leaf::{self, Content, OwnedContent, Posting};
use crate::core::ledger::{self, Refusal, State};
use crate::core::merkle::{self, Frontier, Hash};
use crate::core::policy::Event;
use crate::core::protocol::{self, PreparedCommand, ProtocolError, VerifiedCommand};
use crate::core::time::Timestamp;
use crate::store::derived::{self, Derived, DerivedLeaf, Indexer, Progress};
use crate::store::read::LiveAccounts;
use crate::store::{self, StoreError, to_i64};

/// Most commands committed in one transaction.
pub const BATCH_COMMANDS_MAX: usize = 1024;
/// Most commands waiting for the writer; senders wait (back-pressure) beyond it.
pub const QUEUE_COMMANDS_MAX: usize = 8192;
/// How long a batch may wait for more commands, counted from the previous batch's
/// start, when many clients are connected (see [`Pacing`]).
pub const COMMIT_WAIT_DEFAULT: Duration = Duration::from_millis(3);
/// Connected clients a batch does not wait for (see [`Pacing`]). With 64 clients a
/// batch waits for half of them: the other half keep the cores busy while it commits
/// (with 16, a batch could take 48 of 64 and leave the cores idle while it committed).
pub const COMMIT_SIBLINGS_DEFAULT: usize = 32;
/// How often a waiting batch looks for new commands.
const COMMIT_WAIT_STEP: Duration = Duration::from_micros(200);

/// When a batch waits for more commands before it commits, like PostgreSQL's
/// `commit_delay` and `commit_siblings`.
///
/// Each commit costs the machine about 200 µs of CPU time whatever its size
/// (`fdatasync`, the checkpoint's signature, SQLite's commit). With many clients
/// connected, the cores are busy checking their signatures, and batches can grow
/// without leaving a core idle: a batch then waits, until all connected clients but
/// `siblings` have a command in it, or `wait` after the previous batch began. With
/// few clients, a wait would leave the cores idle and cost throughput, so there is
/// none: at most `siblings` connected clients, the writer commits what has queued at
/// once, as it always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Longest wait, from the previous batch's start; zero never waits.
    pub wait: Duration,
    /// Connected clients a batch does not wait for.
    pub siblings: usize,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing { wait: COMMIT_WAIT_DEFAULT, siblings: COMMIT_SIBLINGS_DEFAULT }
    }
}

/// How the writer thread asks the kernel to schedule it.
///
/// Every command passes through the writer, and the HTTP handlers keep both cores
/// busy checking signatures: at normal priority, a writer woken by a command waits
/// up to a scheduler slice (milliseconds) for a core while every client of the batch
/// waits on it, and the cores then sit idle until its commit answers them. At
/// real-time priority it runs as soon as it is woken. Its work is bounded (a batch
/// of at most [`BATCH_COMMANDS_MAX`] commands, then it sleeps until the next), and
/// the kernel keeps a share of each second for other threads whatever it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Priority {
    /// `SCHED_FIFO` at its lowest level, when the service may ask for it (root, the
    /// `CAP_SYS_NICE` capability, or `LimitRTPRIO=1` under systemd); otherwise
    /// normal priority, and the log says why.
    #[default]
    Realtime,
    /// The default time-sharing policy, like every other thread.
    Normal,
}

/// The real-time level the writer asks for: the lowest, above every normal thread.
const REALTIME_LEVEL: i32 = 1;

/// Applies `priority` to the calling thread and says in the log what it got.
fn set_priority(priority: Priority) {
    if priority == Priority::Normal {
        return;
    }
    match set_realtime() {
        Ok(()) => tracing::info!(level = REALTIME_LEVEL, "the writer runs at real-time priority (SCHED_FIFO)"),
        // Information, not a warning: a village's load never needs it.
        Err(error) => tracing::info!(
            %error,
            "the writer runs at normal priority: real-time priority needs root, CAP_SYS_NICE or \
             LimitRTPRIO=1 (see docs/operations.md), and gives more payments per second under full load"
        ),
    }
}

#[cfg(target_os = "linux")]
fn set_realtime() -> std::io::Result<()> {
    let parameters = libc::sched_param { sched_priority: REALTIME_LEVEL };
    // SAFETY: sched_setscheduler reads the parameters through a pointer to a live,
    // initialised struct; pid 0 is the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &parameters) };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn set_realtime() -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "real-time priority is only asked for on Linux"))
}

/// How many clients could send a command at this moment: the open connections, less
/// those holding a live event stream. The HTTP layer keeps it; [`Pacing`] reads it.
/// Signed, as a stream's guard may briefly outlive its connection's.
#[derive(Debug, Clone, Default)]
pub struct Senders(Arc<AtomicIsize>);

impl Senders {
    pub fn count(&self) -> usize {
        usize::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Counts one more sender until the guard is dropped (a connection).
    pub fn arrive(&self) -> SenderGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        SenderGuard { senders: self.clone(), arrived: true }
    }

    /// Counts one sender fewer until the guard is dropped (a connection that holds an
    /// event stream, and sends nothing while it does).
    pub fn step_away(&self) -> SenderGuard {
        self.0.fetch_sub(1, Ordering::Relaxed);
        SenderGuard { senders: self.clone(), arrived: false }
    }
}

/// Undoes [`Senders::arrive`] or [`Senders::step_away`] when dropped.
#[derive(Debug)]
pub struct SenderGuard {
    senders: Senders,
    arrived: bool,
}

impl Drop for SenderGuard {
    fn drop(&mut self) {
        if self.arrived {
            self.senders.0.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.senders.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a client gets for an accepted command. A pure function of the stored leaf, so
/// the same command posted again gets the same receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    pub tx: [u8; 32],
    pub accepted_at: Timestamp,
    pub account: AccountId,
    pub seq: Seq,
    pub postings: Vec<Posting>,
}

/// Why a submitted command got no receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The state machine refused it (status per [`Refusal`]).
    #[error("{0}")]
    Refused(Refusal),
    /// 503 `storage_unavailable`: the batch could not be committed; nothing was kept.
    #[error("the ledger could not store the command ({0}); nothing was recorded, try again")]
    Unavailable(String),
    /// 401 `bad_signature`: the command's signature does not verify (the writer does
    /// its last step).
    #[error("{0}")]
    Invalid(ProtocolError),
    /// 503 `writer_stopped`: the service is shutting down or has failed.
    #[error("the ledger is not accepting commands right now (the service is stopping); try again shortly")]
    Stopped,
}

enum Message {
    Submit(Box<Submission>),
    /// Append the server events now due; tell the sender when done.
    Tick(Option<oneshot::Sender<()>>),
    Stop,
}

/// A command as a handler queued it, its signature's last step still to do.
struct Submission {
    command: PreparedCommand,
    reply: oneshot::Sender<Result<Receipt, SubmitError>>,
}

/// A submission whose signature the writer has finished checking.
struct Verified {
    command: VerifiedCommand,
    reply: oneshot::Sender<Result<Receipt, SubmitError>>,
}

/// The handlers' side of the writer.
pub struct WriterHandle {
    sender: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    senders: Senders,
}

impl WriterHandle {
    /// Starts the writer thread with the state and tree loaded from `connection`; it
    /// signs a checkpoint with `ledger_key` after each batch and hands what each batch
    /// changed to the indexer of `derivation`. Batches wait for more commands as
    /// `pacing` says; the thread runs at `priority`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        connection: Connection,
        ledger: Ledger,
        ledger_key: SigningKey,
        clock: Clock,
        batch_max: usize,
        pacing: Pacing,
        priority: Priority,
        after_commit: AfterCommit,
        derivation: Derivation,
    ) -> std::io::Result<WriterHandle> {
        assert_eq!(ledger.state.size(), ledger.frontier.size(), "the tree covers the whole log");
        let (sender, receiver) = mpsc::channel(QUEUE_COMMANDS_MAX);
        let batch_max = batch_max.clamp(1, BATCH_COMMANDS_MAX);
        let senders = Senders::default();
        let writer = Writer {
            pacing,
            senders: senders.clone(),
            last_batch: Instant::now(),
            connection,
            ledger,
            ledger_key,
            clock,
            receiver,
            stopping: false,
            batch_max,
            after_commit,
            derivation,
            recent: Recent::default(),
        };
        let thread = std::thread::Builder::new().name("covoit-writer".into()).spawn(move || {
            set_priority(priority);
            writer.run();
        })?;
        Ok(WriterHandle { sender, thread: std::sync::Mutex::new(Some(thread)), senders })
    }

    /// The count of clients that could send a command, for the HTTP layer to keep.
    pub fn senders(&self) -> &Senders {
        &self.senders
    }

    /// Queues a command whose signature is checked but for its last step (the writer
    /// finishes a batch's together) and waits for its batch to commit.
    pub async fn submit(&self, command: PreparedCommand) -> Result<Receipt, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Message::Submit(Box::new(Submission { command, reply })))
            .await
            .map_err(|_| SubmitError::Stopped)?;
        answer.await.unwrap_or(Err(SubmitError::Stopped))
    }

    /// Appends the server events due now (ride settlements and expiries) and waits
    /// until they are committed. The service's timer calls this; so can tests.
    pub async fn tick(&self) {
        let (done, finished) = oneshot::channel();
        if self.sender.send(Message::Tick(Some(done))).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// Asks for the due server events without waiting (from a timer).
    pub fn try_tick(&self) {
        let _ = self.sender.try_send(Message::Tick(None));
    }

    /// Whether the writer thread is still taking commands.
    pub fn is_running(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Lets the writer finish what is queued, then closes the database and waits.
    pub async fn stop(&self) {
        // If the writer is already gone, there is nothing to tell it.
        let _ = self.sender.send(Message::Stop).await;
        let thread = self.thread.lock().expect("the writer handle's lock").take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the writer thread ended with a panic");
            }
        }
    }
}

/// What the writer keeps in memory: the state and the right edge of the tree.
pub struct Ledger {
    pub state: State,
    pub frontier: Frontier,
}

/// What a committed batch changed, for the matching board and the event streams.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub accounts: BTreeSet<AccountId>,
    /// (kind, id) of every ride object changed or removed.
    pub rides: BTreeSet<(&'static str, String)>,
    pub policy: bool,
}

/// Called by the writer after each commit, with the new state and what changed.
pub type AfterCommit = Box<dyn FnMut(&State, &Changes) + Send>;

/// The writer's side of the derived tables: the indexer it feeds, the progress it
/// reports, and a read-only connection to find old commands by (account, seq).
pub struct Derivation {
    pub indexer: Indexer,
    pub progress: Arc<Progress>,
    pub reader: Connection,
    pub live: Arc<LiveAccounts>,
}

/// The commands committed but perhaps not yet in the derived tables, by (account,
/// seq): an identical envelope posted again is found here until the indexer has it.
#[derive(Default)]
struct Recent {
    by_command: HashMap<(AccountId, Seq), (u64, [u8; 32])>,
    /// In log order, to forget them once indexed.
    order: VecDeque<(u64, AccountId, Seq)>,
}

impl Recent {
    fn insert(&mut self, index: u64, account: &AccountId, seq: Seq, tx: [u8; 32]) {
        self.by_command.insert((account.clone(), seq), (index, tx));
        self.order.push_back((index, account.clone(), seq));
    }

    /// Forgets the commands below leaf `below` (indexed, so the derived tables have them).
    fn forget_below(&mut self, below: u64) {
        while self.order.front().is_some_and(|(index, _, _)| *index < below) {
            let (_, account, seq) = self.order.pop_front().expect("checked");
            self.by_command.remove(&(account, seq));
        }
    }

    /// Forgets the commands from leaf `from` on (a batch that did not commit).
    fn forget_from(&mut self, from: u64) {
        while self.order.back().is_some_and(|(index, _, _)| *index >= from) {
            let (_, account, seq) = self.order.pop_back().expect("checked");
            self.by_command.remove(&(account, seq));
        }
    }
}

struct Writer {
    connection: Connection,
    ledger: Ledger,
    ledger_key: SigningKey,
    clock: Clock,
    receiver: mpsc::Receiver<Message>,
    stopping: bool,
    /// Commands committed together at most: [`BATCH_COMMANDS_MAX`], or 1 to measure
    /// one transaction per command.
    batch_max: usize,
    after_commit: AfterCommit,
    derivation: Derivation,
    recent: Recent,
    pacing: Pacing,
    senders: Senders,
    /// When the last batch was taken, for [`Pacing::wait`].
    last_batch: Instant,
}

/// What the writer takes in one go: commands, and ticks asking for due events.
#[derive(Default)]
struct Batch {
    submissions: Vec<Submission>,
    ticks: Vec<oneshot::Sender<()>>,
}

/// The leaves a committed batch added, as the derived tables record them, and the
/// last one's Merkle leaf hash.
struct Written {
    leaves: Vec<DerivedLeaf>,
    last_leaf_hash: Hash,
}

/// What the writer decided for one submission, before the batch commits.
enum Decision {
    /// A new leaf, with its Merkle leaf hash.
    Accepted(Receipt, Hash),
    Duplicate(u64),
    Refused(Refusal),
}

/// Finishes the signature checks of a batch's commands together (one field inversion
/// for all of them), answering those whose signature fails; the rest go on to be decided.
fn finish_signatures(submissions: Vec<Submission>) -> Vec<Verified> {
    let (commands, replies): (Vec<PreparedCommand>, Vec<_>) =
        submissions.into_iter().map(|submission| (submission.command, submission.reply)).unzip();
    let mut verified = Vec::with_capacity(commands.len());
    for (checked, reply) in protocol::finish_verification(commands).into_iter().zip(replies) {
        match checked {
            Ok(command) => verified.push(Verified { command, reply }),
            Err(error) => {
                let _ = reply.send(Err(SubmitError::Invalid(error)));
            }
        }
    }
    verified
}

impl Writer {
    fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.process(batch);
        }
        tracing::info!(size = self.ledger.state.size(), "the writer stopped; closing the database");
        self.derivation.indexer.stop();
        if let Err((_, error)) = self.connection.close() {
            tracing::error!(%error, "closing the database failed");
        }
    }

    /// Waits for one submission or tick, then takes whatever else is queued, and
    /// what arrives while [`Pacing`] says to wait.
    fn next_batch(&mut self) -> Option<Batch> {
        if self.stopping {
            return None;
        }
        let mut batch = Batch::default();
        match self.receiver.blocking_recv() {
            Some(Message::Submit(submission)) => batch.submissions.push(*submission),
            Some(Message::Tick(done)) => batch.ticks.extend(done),
            Some(Message::Stop) | None => return None,
        }
        self.take_queued(&mut batch);
        while self.waits_for_more(&batch) {
            let left = self.pacing.wait.saturating_sub(self.last_batch.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(COMMIT_WAIT_STEP));
            self.take_queued(&mut batch);
        }
        self.last_batch = Instant::now();
        Some(batch)
    }

    /// Adds what is queued to `batch`, up to the batch's size limit.
    fn take_queued(&mut self, batch: &mut Batch) {
        while batch.submissions.len() < self.batch_max {
            match self.receiver.try_recv() {
                Ok(Message::Submit(submission)) => batch.submissions.push(*submission),
                Ok(Message::Tick(done)) => batch.ticks.extend(done),
                Ok(Message::Stop) => {
                    self.stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
    }

    /// Whether more than [`Pacing::siblings`] connected clients have no command in
    /// `batch` yet (a batch of commands with room to grow, the writer not stopping).
    fn waits_for_more(&self, batch: &Batch) -> bool {
        let commands = batch.submissions.len();
        !self.stopping
            && !self.pacing.wait.is_zero()
            && (1..self.batch_max).contains(&commands)
            && commands + self.pacing.siblings < self.senders.count()
    }

    fn process(&mut self, batch: Batch) {
        // accepted_at never goes backwards, even if the system clock does.
        let accepted_at = self.clock.now().max(self.ledger.state.totals().last_accepted_at);
        let Batch { submissions, ticks } = batch;
        let submissions = finish_signatures(submissions);
        // What the indexer has written needs no remembering here any more.
        self.recent.forget_below(self.derivation.progress.indexed());
        let first_index = self.ledger.state.size();
        match self.write_batch(&submissions, accepted_at) {
            Ok((decisions, changes, written)) => {
                // Reads see the batch before its clients hear back: the accounts now,
                // and the rest once the indexer has written it (reads wait for that).
                let state = &self.ledger.state;
                if written.is_some() {
                    self.derivation.live.update(changes.accounts.iter().filter_map(|id| state.account(id)));
                    self.derivation.progress.set_committed(state.size());
                }
                if changes != Changes::default() {
                    (self.after_commit)(state, &changes);
                }
                for (submission, decision) in submissions.into_iter().zip(decisions) {
                    let answer = self.answer(decision);
                    // The client may have gone away; its command is stored all the same.
                    let _ = submission.reply.send(answer);
                }
                // The indexer's copy of what changed is made after the answers, off
                // the clients' path.
                if let Some(Written { leaves, last_leaf_hash }) = written {
                    let state = &self.ledger.state;
                    let mut derived = Derived::new(state, last_leaf_hash);
                    derived.leaves = leaves;
                    derived.touch(state, &changes.accounts, &changes.rides);
                    self.derivation.indexer.send(derived);
                }
            }
            Err(error) => {
                tracing::error!(%error, commands = submissions.len(), "a batch failed to commit; nothing of it was kept");
                for submission in submissions {
                    let _ = submission.reply.send(Err(SubmitError::Unavailable(error.to_string())));
                }
                self.recent.forget_from(first_index);
                self.reload();
            }
        }
        for done in ticks {
            let _ = done.send(());
        }
    }

    fn answer(&self, decision: Decision) -> Result<Receipt, SubmitError> {
        match decision {
            Decision::Accepted(receipt, _) => Ok(receipt),
            Decision::Refused(refusal) => Err(SubmitError::Refused(refusal)),
            Decision::Duplicate(index) => {
                load_receipt(&self.connection, index).map_err(|error| SubmitError::Unavailable(error.to_string()))
            }
        }
    }

    /// Appends the server events now due, then applies the commands, in one
    /// transaction; extends the tree, signs a checkpoint and commits. Returns what was
    /// written, when anything was accepted.
    fn write_batch(
        &mut self,
        batch: &[Verified],
        accepted_at: Timestamp,
    ) -> Result<(Vec<Decision>, Changes, Option<Written>), StoreError> {
        let Writer { connection, ledger, ledger_key, derivation, recent, .. } = self;
        let first_index = ledger.state.size();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut changes = Changes::default();
        let mut leaves = Vec::new();
        let mut last_leaf_hash = [0; 32];
        for event in ledger::due_events(&ledger.state, accepted_at) {
            let (leaf, hash) = append_event(&transaction, ledger, &event, accepted_at, &mut changes)?;
            leaves.push(leaf);
            last_leaf_hash = hash;
        }
        let mut decisions = Vec::with_capacity(batch.len());
        for submission in batch {
            let command = &submission.command;
            let decision =
                decide_one(&transaction, ledger, &derivation.reader, recent, command, accepted_at, &mut changes)?;
            if let Decision::Accepted(receipt, hash) = &decision {
                leaves.push(DerivedLeaf {
                    index: receipt.index,
                    command: Some((receipt.account.clone(), receipt.seq, receipt.tx)),
                    postings: receipt.postings.clone(),
                });
                last_leaf_hash = *hash;
            }
            decisions.push(decision);
        }
        if ledger.state.size() == first_index {
            // Nothing accepted: nothing to write. Dropping the transaction rolls back.
            return Ok((decisions, Changes::default(), None));
        }
        if changes.policy {
            let policy = String::from_utf8(canonical::to_canonical_vec(ledger.state.policy())).expect("JSON is UTF-8");
            transaction.execute("UPDATE ledger SET policy = ?1 WHERE id = 1", [policy])?;
        }
        assert_eq!(ledger.frontier.size(), ledger.state.size(), "every leaf is in the tree");
        let totals = ledger.state.totals();
        let origin = ledger.state.ledger().as_str();
        let note = checkpoint::sign_checkpoint(origin, ledger.frontier.size(), &ledger.frontier.root(), ledger_key);
        // Cached: it runs once a batch, and parsing it again each time showed in profiles.
        transaction
            .prepare_cached(
                "UPDATE ledger SET size = ?1, last_accepted_at = ?2, issued = ?3, redeemed = ?4, checkpoint = ?5
                 WHERE id = 1",
            )?
            .execute(params![
                to_i64(totals.size)?,
                totals.last_accepted_at.to_string(),
                totals.issued,
                totals.redeemed,
                note
            ])?;
        for leaf in &leaves {
            leaf::assert_zero_sum(&leaf.postings);
        }
        transaction.commit()?;
        Ok((decisions, changes, Some(Written { leaves, last_leaf_hash })))
    }

    /// After a failed batch the in-memory state may hold changes that were rolled
    /// back: read it again from the database, which has only what committed (the
    /// derived tables, and the leaves they do not cover yet, replayed).
    fn reload(&mut self) {
        let reloaded = derived::state_at_log_end(&self.connection, &self.derivation.reader).and_then(|state| {
            let frontier = Frontier::load(&store::SqlNodes(&self.connection), state.size())?;
            Ok(Ledger { state, frontier })
        });
        match reloaded {
            Ok(ledger) => self.ledger = ledger,
            Err(error) => {
                tracing::error!(%error, "the state could not be reloaded; the writer stops");
                self.stopping = true;
                self.receiver.close();
            }
        }
    }
}

/// Decides one command: a repeat of a stored one, a refusal, or a new leaf.
fn decide_one(
    connection: &Connection,
    ledger: &mut Ledger,
    derived: &Connection,
    recent: &mut Recent,
    command: &VerifiedCommand,
    accepted_at: Timestamp,
    changes: &mut Changes,
) -> Result<Decision, StoreError> {
    let Ledger { state, frontier } = ledger;
    let body = command.body();
    // The identical command again: answered from the log, before any other check,
    // so that it holds even after not_after has passed.
    if let Some(account) = state.account(&body.account) {
        let key = if body.by_operator { Some(state.operator_key()) } else { account.key.as_ref() };
        let same_key = key == Some(command.key());
        if body.seq < account.next_seq && same_key {
            let stored = match recent.by_command.get(&(body.account.clone(), body.seq)) {
                Some(found) => Some(*found),
                None => derived::find_command(derived, &body.account, body.seq)?,
            };
            if let Some((index, tx)) = stored {
                if &tx == command.tx() {
                    return Ok(Decision::Duplicate(index));
                }
            }
        }
    }
    let outcome = match ledger::apply(state, command, accepted_at) {
        Ok(outcome) => outcome,
        Err(refusal) => return Ok(Decision::Refused(refusal)),
    };
    let index = state.size() - 1;
    let bytes = insert_leaf(connection, index, accepted_at, command, &outcome.postings)?;
    let hash = merkle::leaf_hash(&bytes);
    store::insert_nodes(connection, &frontier.push(hash))?;
    recent.insert(index, &body.account, body.seq, *command.tx());
    changes.accounts.extend(outcome.touched);
    changes.rides.extend(outcome.rides);
    changes.policy |= outcome.policy_changed;
    let receipt = Receipt {
        index,
        tx: *command.tx(),
        accepted_at,
        account: body.account.clone(),
        seq: body.seq,
        postings: outcome.postings,
    };
    Ok(Decision::Accepted(receipt, hash))
}

/// Appends one server event as a leaf; returns it as the derived tables record it,
/// with its leaf hash.
fn append_event(
    connection: &Connection,
    ledger: &mut Ledger,
    event: &Event,
    accepted_at: Timestamp,
    changes: &mut Changes,
) -> Result<(DerivedLeaf, Hash), StoreError> {
    let outcome = ledger::apply_event(&mut ledger.state, event, accepted_at)
        .map_err(|refusal| StoreError::Corrupt(format!("a due event was refused: {refusal}")))?;
    let index = ledger.state.size() - 1;
    let bytes = leaf::encode(index, accepted_at, Content::Event(event), &outcome.postings);
    let mut insert = connection
        .prepare_cached("INSERT INTO leaves (leaf_index, bytes, kind, accepted_at) VALUES (?1, ?2, ?3, ?4)")?;
    insert.execute(params![to_i64(index)?, &bytes, event.kind(), accepted_at.to_string()])?;
    let hash = merkle::leaf_hash(&bytes);
    store::insert_nodes(connection, &ledger.frontier.push(hash))?;
    tracing::info!(index, kind = event.kind(), "server event");
    changes.accounts.extend(outcome.touched);
    changes.rides.extend(outcome.rides);
    Ok((DerivedLeaf { index, command: None, postings: outcome.postings }, hash))
}

fn insert_leaf(
    connection: &Connection,
    index: u64,
    accepted_at: Timestamp,
    command: &VerifiedCommand,
    postings: &[Posting],
) -> Result<Vec<u8>, StoreError> {
    let body = command.body();
    let bytes = leaf::encode(index, accepted_at, Content::Command(command.envelope()), postings);
    let mut insert_leaf = connection.prepare_cached(
        "INSERT INTO leaves (leaf_index, bytes, kind, account, seq, tx, memo, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    insert_leaf.execute(params![
        to_i64(index)?,
        &bytes,
        body.command.kind(),
        body.account.as_str(),
        to_i64(body.seq.value())?,
        command.tx().as_slice(),
        body.command.memo().map(|memo| memo.as_str()),
        accepted_at.to_string(),
    ])?;
    Ok(bytes)
}

/// Rebuilds the receipt of a stored command leaf from its bytes.
pub fn load_receipt(connection: &Connection, index: u64) -> Result<Receipt, StoreError> {
    let bytes = store::leaf_bytes(connection, index)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("leaf {index} {what}"));
    let leaf = leaf::decode(&bytes).map_err(|error| corrupt(&format!("does not decode: {error}")))?;
    let OwnedContent::Command(envelope) = leaf.content else {
        return Err(corrupt("is not a command"));
    };
    let command = crate::core::protocol::check_envelope(envelope)
        .map_err(|error| corrupt(&format!("holds a refused command: {error}")))?;
    let body = command.body();
    Ok(Receipt {
        index,
        tx: *command.tx(),
        accepted_at: leaf.accepted_at,
        account: body.account.clone(),
        seq: body.seq,
        postings: leaf.postings,
    })
}
