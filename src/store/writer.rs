//! The single writer: one thread that owns the write connection and the state, and
//! commits commands in batches (group commit).
//!
//! Handlers verify envelopes on any core, then queue the [`VerifiedCommand`] here. The
//! writer takes everything queued (up to [`BATCH_COMMANDS_MAX`]), applies each command
//! with the pure state machine inside one SQLite transaction, commits it (one fsync
//! for the batch) and only then answers each waiting request. While it commits, new
//! commands queue up and form the next batch, so the fsync cost is shared and no lock
//! is held across an fsync per request. Reads never go through here.

use std::collections::BTreeSet;
use std::thread::JoinHandle;

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::core::canonical;
use crate::core::checkpoint;
use crate::core::ids::{AccountId, Seq};
use crate::core::leaf::{self, Content, Posting};
use crate::core::ledger::{self, Refusal, State};
use crate::core::merkle::{self, Frontier};
use crate::core::policy::Event;
use crate::core::protocol::VerifiedCommand;
use crate::core::time::Timestamp;
use crate::store::{self, StoreError, to_i64, to_u64};

/// Most commands committed in one transaction.
pub const BATCH_COMMANDS_MAX: usize = 1024;
/// Most commands waiting for the writer; senders wait (back-pressure) beyond it.
pub const QUEUE_COMMANDS_MAX: usize = 8192;

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

struct Submission {
    command: VerifiedCommand,
    reply: oneshot::Sender<Result<Receipt, SubmitError>>,
}

/// The handlers' side of the writer.
pub struct WriterHandle {
    sender: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl WriterHandle {
    /// Starts the writer thread with the state and tree loaded from `connection`; it
    /// signs a checkpoint with `ledger_key` after each batch.
    pub fn start(
        connection: Connection,
        ledger: Ledger,
        ledger_key: SigningKey,
        clock: Clock,
        batch_max: usize,
        after_commit: AfterCommit,
    ) -> std::io::Result<WriterHandle> {
        assert_eq!(ledger.state.size(), ledger.frontier.size(), "the tree covers the whole log");
        let (sender, receiver) = mpsc::channel(QUEUE_COMMANDS_MAX);
        let batch_max = batch_max.clamp(1, BATCH_COMMANDS_MAX);
        let writer =
            Writer { connection, ledger, ledger_key, clock, receiver, stopping: false, batch_max, after_commit };
        let thread = std::thread::Builder::new().name("covoit-writer".into()).spawn(move || writer.run())?;
        Ok(WriterHandle { sender, thread: std::sync::Mutex::new(Some(thread)) })
    }

    /// Queues a verified command and waits for its batch to commit.
    pub async fn submit(&self, command: VerifiedCommand) -> Result<Receipt, SubmitError> {
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
}

/// What the writer takes in one go: commands, and ticks asking for due events.
#[derive(Default)]
struct Batch {
    submissions: Vec<Submission>,
    ticks: Vec<oneshot::Sender<()>>,
}

/// What the writer decided for one submission, before the batch commits.
enum Decision {
    Accepted(Receipt),
    Duplicate(u64),
    Refused(Refusal),
}

impl Writer {
    fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.process(batch);
        }
        tracing::info!(size = self.ledger.state.size(), "the writer stopped; closing the database");
        if let Err((_, error)) = self.connection.close() {
            tracing::error!(%error, "closing the database failed");
        }
    }

    /// Waits for one submission or tick, then takes whatever else is queued.
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
        Some(batch)
    }

    fn process(&mut self, batch: Batch) {
        // accepted_at never goes backwards, even if the system clock does.
        let accepted_at = self.clock.now().max(self.ledger.state.totals().last_accepted_at);
        let Batch { submissions, ticks } = batch;
        match self.write_batch(&submissions, accepted_at) {
            Ok((decisions, changes)) => {
                if changes != Changes::default() {
                    (self.after_commit)(&self.ledger.state, &changes);
                }
                for (submission, decision) in submissions.into_iter().zip(decisions) {
                    let answer = self.answer(decision);
                    // The client may have gone away; its command is stored all the same.
                    let _ = submission.reply.send(answer);
                }
            }
            Err(error) => {
                tracing::error!(%error, commands = submissions.len(), "a batch failed to commit; nothing of it was kept");
                for submission in submissions {
                    let _ = submission.reply.send(Err(SubmitError::Unavailable(error.to_string())));
                }
                self.reload();
            }
        }
        for done in ticks {
            let _ = done.send(());
        }
    }

    fn answer(&self, decision: Decision) -> Result<Receipt, SubmitError> {
        match decision {
            Decision::Accepted(receipt) => Ok(receipt),
            Decision::Refused(refusal) => Err(SubmitError::Refused(refusal)),
            Decision::Duplicate(index) => {
                load_receipt(&self.connection, index).map_err(|error| SubmitError::Unavailable(error.to_string()))
            }
        }
    }

    /// Appends the server events now due, then applies the commands, in one
    /// transaction; extends the tree, signs a checkpoint and commits.
    fn write_batch(
        &mut self,
        batch: &[Submission],
        accepted_at: Timestamp,
    ) -> Result<(Vec<Decision>, Changes), StoreError> {
        let Writer { connection, ledger, ledger_key, .. } = self;
        let first_index = ledger.state.size();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut changes = Changes::default();
        for event in ledger::due_events(&ledger.state, accepted_at) {
            append_event(&transaction, ledger, &event, accepted_at, &mut changes)?;
        }
        let mut decisions = Vec::with_capacity(batch.len());
        for submission in batch {
            decisions.push(decide_one(&transaction, ledger, &submission.command, accepted_at, &mut changes)?);
        }
        if ledger.state.size() == first_index {
            // Nothing accepted: nothing to write. Dropping the transaction rolls back.
            return Ok((decisions, Changes::default()));
        }
        for id in &changes.accounts {
            store::save_account(&transaction, ledger.state.account(id).expect("touched accounts exist"))?;
        }
        for (kind, id) in &changes.rides {
            store::save_ride_object(&transaction, ledger.state.rides(), kind, id)?;
        }
        if changes.policy {
            let policy = String::from_utf8(canonical::to_canonical_vec(ledger.state.policy())).expect("JSON is UTF-8");
            transaction.execute("UPDATE ledger SET policy = ?1 WHERE id = 1", [policy])?;
        }
        assert_eq!(ledger.frontier.size(), ledger.state.size(), "every leaf is in the tree");
        let totals = ledger.state.totals();
        let origin = ledger.state.ledger().as_str();
        let note = checkpoint::sign_checkpoint(origin, ledger.frontier.size(), &ledger.frontier.root(), ledger_key);
        transaction.execute(
            "UPDATE ledger SET size = ?1, last_accepted_at = ?2, issued = ?3, redeemed = ?4, checkpoint = ?5
             WHERE id = 1",
            params![to_i64(totals.size)?, totals.last_accepted_at.to_string(), totals.issued, totals.redeemed, note],
        )?;
        assert_postings_balance(&transaction, first_index)?;
        transaction.commit()?;
        Ok((decisions, changes))
    }

    /// After a failed batch the in-memory state may hold changes that were rolled
    /// back: read it again from the database, which has only what committed.
    fn reload(&mut self) {
        let reloaded = store::load_state(&self.connection).and_then(|state| {
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
            if let Some((index, tx)) = find_leaf(connection, &body.account, body.seq)? {
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
    store::insert_nodes(connection, &frontier.push(merkle::leaf_hash(&bytes)))?;
    changes.accounts.extend(outcome.touched);
    changes.rides.extend(outcome.rides);
    changes.policy |= outcome.policy_changed;
    Ok(Decision::Accepted(Receipt {
        index,
        tx: *command.tx(),
        accepted_at,
        account: body.account.clone(),
        seq: body.seq,
        postings: outcome.postings,
    }))
}

/// Appends one server event as a leaf.
fn append_event(
    connection: &Connection,
    ledger: &mut Ledger,
    event: &Event,
    accepted_at: Timestamp,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    let outcome = ledger::apply_event(&mut ledger.state, event, accepted_at)
        .map_err(|refusal| StoreError::Corrupt(format!("a due event was refused: {refusal}")))?;
    let index = ledger.state.size() - 1;
    let bytes = leaf::encode(index, accepted_at, Content::Event(event), &outcome.postings);
    let mut insert = connection
        .prepare_cached("INSERT INTO leaves (leaf_index, bytes, kind, accepted_at) VALUES (?1, ?2, ?3, ?4)")?;
    insert.execute(params![to_i64(index)?, &bytes, event.kind(), accepted_at.to_string()])?;
    insert_postings(connection, index, &outcome.postings)?;
    store::insert_nodes(connection, &ledger.frontier.push(merkle::leaf_hash(&bytes)))?;
    tracing::info!(index, kind = event.kind(), "server event");
    changes.accounts.extend(outcome.touched);
    changes.rides.extend(outcome.rides);
    Ok(())
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
    insert_postings(connection, index, postings)?;
    Ok(bytes)
}

fn insert_postings(connection: &Connection, index: u64, postings: &[Posting]) -> Result<(), StoreError> {
    let mut insert_posting = connection
        .prepare_cached("INSERT INTO postings (leaf_index, position, account, amount) VALUES (?1, ?2, ?3, ?4)")?;
    for (position, posting) in postings.iter().enumerate() {
        insert_posting.execute(params![
            to_i64(index)?,
            position as i64,
            posting.account.as_str(),
            posting.amount_minor
        ])?;
    }
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

fn find_leaf(connection: &Connection, account: &AccountId, seq: Seq) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    let mut statement =
        connection.prepare_cached("SELECT leaf_index, tx FROM leaves WHERE account = ?1 AND seq = ?2")?;
    let row: Option<(i64, Vec<u8>)> = statement
        .query_row(params![account.as_str(), to_i64(seq.value())?], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(index, tx)| {
        let tx =
            <[u8; 32]>::try_from(tx.as_slice()).map_err(|_| StoreError::Corrupt("a stored tx is not 32 bytes".into()));
        Ok((to_u64(index)?, tx?))
    })
    .transpose()
}

/// Rebuilds the receipt of a stored command leaf.
pub fn load_receipt(connection: &Connection, index: u64) -> Result<Receipt, StoreError> {
    let (tx, accepted_at, account, seq): (Vec<u8>, String, String, i64) = connection.query_row(
        "SELECT tx, accepted_at, account, seq FROM leaves WHERE leaf_index = ?1 AND account IS NOT NULL",
        [to_i64(index)?],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("leaf {index} has a bad {what}"));
    let mut statement =
        connection.prepare_cached("SELECT account, amount FROM postings WHERE leaf_index = ?1 ORDER BY position")?;
    let postings = statement
        .query_map([to_i64(index)?], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?
        .map(|row| {
            let (account, amount_minor) = row?;
            let account = AccountId::parse(&account).map_err(|_| corrupt("posting account"))?;
            Ok(Posting { account, amount_minor })
        })
        .collect::<Result<Vec<Posting>, StoreError>>()?;
    Ok(Receipt {
        index,
        tx: <[u8; 32]>::try_from(tx.as_slice()).map_err(|_| corrupt("tx"))?,
        accepted_at: Timestamp::parse_canonical(&accepted_at).map_err(|_| corrupt("accepted_at"))?,
        account: AccountId::parse(&account).map_err(|_| corrupt("account"))?,
        seq: Seq::new(to_u64(seq)?),
        postings,
    })
}
