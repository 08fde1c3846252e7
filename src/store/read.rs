//! Reads: a small pool of read-only connections and the queries the HTTP reads need.
//!
//! With WAL, a reader sees the last committed state and never waits for the writer;
//! each read that takes several queries runs them in one read transaction, so what it
//! returns is one consistent snapshot.
//!
//! Each connection has the derived tables attached. A read of histories or rides first
//! waits until they cover every leaf committed when it began ([`Progress`]): what a
//! client was told is committed, it then reads. A single account is read from
//! [`LiveAccounts`], which the writer keeps as of its last commit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, OptionalExtension, params};

use crate::core::ids::AccountId;
use crate::core::ledger::Account;
use crate::core::merkle::{self, Hash, ProofError};
use crate::core::policy::{Genesis, Policy};
use crate::core::rides::RideObject;
use crate::store::derived::{Progress, READ_WAIT_MAX};
use crate::store::{self, SqlNodes, StoreError, to_i64, to_u64};

/// Idle read connections kept open for reuse.
pub const READERS_IDLE_MAX: usize = 8;
/// Most postings in one page of an account's history.
pub const PAGE_POSTINGS_MAX: u32 = 200;
/// Most accounts in a listing.
pub const PAGE_ACCOUNTS_MAX: i64 = 500;
/// Most rides of each kind listed for an account.
pub const PAGE_RIDES_MAX: i64 = 200;
/// Most leaves in one page of the log.
pub const PAGE_LEAVES_MAX: u64 = 1000;

/// `GET /v1/ledger`: the ledger's founding facts, its policy and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerView {
    pub genesis: Genesis,
    pub policy: Policy,
    pub size: u64,
}

/// `GET /v1/accounts/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub account: String,
    pub name: Option<String>,
    pub status: String,
    pub balance: i64,
    pub held: i64,
    pub floor: Option<i64>,
    pub next_seq: u64,
    pub custodial: bool,
}

/// One line of an account's history: one per leaf, the sum of its postings there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingView {
    pub index: u64,
    pub accepted_at: String,
    pub kind: String,
    pub amount: i64,
    /// The account's balance just after this posting.
    pub balance_after: i64,
    pub memo: Option<String>,
    /// The other accounts of the same leaf: who paid, or who was paid.
    pub counterparties: Vec<String>,
}

/// A page of history, newest first; `next_before` continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingsPage {
    pub account: String,
    pub postings: Vec<PostingView>,
    pub next_before: Option<u64>,
}

/// Every account as of the writer's last commit, updated before any reply to that
/// commit goes out: `GET /v1/accounts/{id}` (the read residents make most) never waits
/// for the indexer, and goes on while the derived tables cannot be written.
#[derive(Debug, Default)]
pub struct LiveAccounts(RwLock<HashMap<AccountId, Account>>);

impl LiveAccounts {
    /// Records the accounts as they are now (a copy of an account allocates nothing:
    /// its id and name are shared).
    pub fn update<'a>(&self, accounts: impl IntoIterator<Item = &'a Account>) {
        let mut live = self.0.write().expect("the live accounts' lock");
        for account in accounts {
            live.insert(account.id.clone(), account.clone());
        }
    }

    pub fn get(&self, id: &AccountId) -> Option<AccountView> {
        self.0.read().expect("the live accounts' lock").get(id).map(view_of)
    }
}

fn view_of(account: &Account) -> AccountView {
    AccountView {
        account: account.id.to_string(),
        name: account.name.as_ref().map(|name| name.as_str().to_owned()),
        status: account.status.as_str().to_owned(),
        balance: account.balance,
        held: account.held,
        floor: account.floor.map(|floor| floor.minor()),
        next_seq: account.next_seq.value(),
        custodial: account.custodial,
    }
}

/// A pool of read-only connections to the log, each with the derived tables attached.
pub struct Reader {
    path: PathBuf,
    derived: PathBuf,
    progress: Arc<Progress>,
    live: Arc<LiveAccounts>,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    pub fn new(path: PathBuf, derived: PathBuf, progress: Arc<Progress>, live: Arc<LiveAccounts>) -> Reader {
        Reader { path, derived, progress, live, idle: Mutex::new(Vec::new()) }
    }

    /// [`Reader::with`], once the derived tables cover what is committed now.
    fn with_derived<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.progress.wait_caught_up(READ_WAIT_MAX)?;
        self.with(read)
    }

    /// Runs `read` on a pooled connection, opening one if none is idle.
    pub fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.idle.lock().expect("the read pool's lock").pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => store::open_reader_with_derived(&self.path, &self.derived)?,
        };
        let result = read(&connection);
        let mut idle = self.idle.lock().expect("the read pool's lock");
        if idle.len() < READERS_IDLE_MAX {
            idle.push(connection);
        }
        result
    }

    /// Closes the idle connections. Done at shutdown before the writer closes, so that
    /// the writer's connection is the last one and SQLite can fold the WAL back into
    /// the database file.
    pub fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().expect("the read pool's lock"));
        for connection in idle {
            if let Err((_, error)) = connection.close() {
                tracing::warn!(%error, "closing a read connection failed");
            }
        }
    }

    pub fn ledger(&self) -> Result<LedgerView, StoreError> {
        self.with(ledger)
    }

    pub fn account(&self, id: &AccountId) -> Result<Option<AccountView>, StoreError> {
        Ok(self.live.get(id))
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Result<String, StoreError> {
        self.with(|connection| {
            let note: Option<String> =
                connection.query_row("SELECT checkpoint FROM ledger WHERE id = 1", [], |row| row.get(0))?;
            note.ok_or_else(|| StoreError::Corrupt("the ledger has no checkpoint".into()))
        })
    }

    /// The exact bytes of leaves `start..end`, at most [`PAGE_LEAVES_MAX`] of them.
    pub fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let end = end.min(start.saturating_add(PAGE_LEAVES_MAX));
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT bytes FROM leaves WHERE leaf_index >= ?1 AND leaf_index < ?2 ORDER BY leaf_index",
            )?;
            let rows = statement.query_map(params![to_i64(start)?, to_i64(end)?], |row| row.get::<_, Vec<u8>>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The log's size now.
    pub fn size(&self) -> Result<u64, StoreError> {
        self.with(current_size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves; `None` when
    /// the request is out of range (`size` larger than the log, or `index ≥ size`).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Option<Vec<Hash>>, StoreError> {
        self.with(|connection| {
            let snapshot = connection.unchecked_transaction()?;
            if size > current_size(&snapshot)? {
                return Ok(None);
            }
            proof_or_none(merkle::inclusion_proof(&SqlNodes(&snapshot), index, size))
        })
    }

    /// The consistency proof from the tree of `from` leaves to the tree of `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Option<Vec<Hash>>, StoreError> {
        self.with(|connection| {
            let snapshot = connection.unchecked_transaction()?;
            if to > current_size(&snapshot)? {
                return Ok(None);
            }
            proof_or_none(merkle::consistency_proof(&SqlNodes(&snapshot), from, to))
        })
    }

    /// Member accounts with a status ("pending", "active"), by name, at most
    /// [`PAGE_ACCOUNTS_MAX`]; with custodial ones only when asked.
    pub fn accounts_with_status(&self, status: &str, custodial_only: bool) -> Result<Vec<AccountView>, StoreError> {
        self.with_derived(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT account, name, status, balance, held, floor, next_seq, custodial FROM accounts
                 WHERE status = ?1 AND (?2 = 0 OR custodial = 1) ORDER BY name, account LIMIT ?3",
            )?;
            let rows = statement.query_map(params![status, custodial_only, PAGE_ACCOUNTS_MAX], |row| {
                Ok(AccountView {
                    account: row.get(0)?,
                    name: row.get(1)?,
                    status: row.get(2)?,
                    balance: row.get(3)?,
                    held: row.get(4)?,
                    floor: row.get(5)?,
                    next_seq: row.get::<_, i64>(6)? as u64,
                    custodial: row.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Bookings with a status (the desk lists "disputed" ones), at most
    /// [`PAGE_RIDES_MAX`].
    pub fn bookings_with_status(&self, status: &str) -> Result<Vec<RideObject>, StoreError> {
        self.with_derived(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT state FROM ride_objects WHERE kind = 'booking' AND json_extract(state, '$.status') = ?1
                 ORDER BY json_extract(state, '$.pickup_at') LIMIT ?2",
            )?;
            let rows = statement.query_map(params![status, PAGE_RIDES_MAX], |row| row.get::<_, String>(0))?;
            let mut objects = Vec::new();
            for row in rows {
                objects.push(store::ride_object_from_json("booking", &row?)?);
            }
            Ok(objects)
        })
    }

    /// A ride object by kind and id.
    pub fn ride_object(&self, kind: &str, id: &str) -> Result<Option<RideObject>, StoreError> {
        self.with_derived(|connection| {
            let mut statement =
                connection.prepare_cached("SELECT state FROM ride_objects WHERE kind = ?1 AND id = ?2")?;
            let state: Option<String> = statement.query_row(params![kind, id], |row| row.get(0)).optional()?;
            state.map(|state| store::ride_object_from_json(kind, &state)).transpose()
        })
    }

    /// The offers an account drives, the requests it made and the bookings it takes
    /// part in, newest first by their row (at most [`PAGE_RIDES_MAX`] of each kind).
    pub fn rides_of(&self, account: &AccountId) -> Result<Vec<RideObject>, StoreError> {
        self.with_derived(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT kind, state FROM ride_objects WHERE kind = ?1 AND (driver = ?2 OR passenger = ?2)
                 ORDER BY json_extract(state, ?3) DESC LIMIT ?4",
            )?;
            let mut objects = Vec::new();
            for (kind, order) in [("offer", "$.id"), ("request", "$.earliest"), ("booking", "$.pickup_at")] {
                let rows = statement.query_map(params![kind, account.as_str(), order, PAGE_RIDES_MAX], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (kind, state) = row?;
                    objects.push(store::ride_object_from_json(&kind, &state)?);
                }
            }
            Ok(objects)
        })
    }

    pub fn postings(
        &self,
        id: &AccountId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Option<PostingsPage>, StoreError> {
        self.with_derived(|connection| postings(connection, id, before, limit))
    }
}

fn current_size(connection: &Connection) -> Result<u64, StoreError> {
    to_u64(connection.query_row("SELECT size FROM ledger WHERE id = 1", [], |row| row.get(0))?)
}

fn proof_or_none(proof: Result<Vec<Hash>, ProofError<StoreError>>) -> Result<Option<Vec<Hash>>, StoreError> {
    match proof {
        Ok(hashes) => Ok(Some(hashes)),
        Err(ProofError::OutOfRange(_)) => Ok(None),
        Err(ProofError::Nodes(error)) => Err(error),
    }
}

fn ledger(connection: &Connection) -> Result<LedgerView, StoreError> {
    let (genesis, policy, size): (String, String, i64) =
        connection.query_row("SELECT genesis, policy, size FROM ledger WHERE id = 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    Ok(LedgerView {
        genesis: store::from_json("genesis", &genesis)?,
        policy: store::from_json("policy", &policy)?,
        size: to_u64(size)?,
    })
}

fn account(connection: &Connection, id: &AccountId) -> Result<Option<AccountView>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT account, name, status, balance, held, floor, next_seq, custodial FROM accounts WHERE account = ?1",
    )?;
    let row = statement
        .query_row([id.as_str()], |row| {
            Ok(AccountView {
                account: row.get(0)?,
                name: row.get(1)?,
                status: row.get(2)?,
                balance: row.get(3)?,
                held: row.get(4)?,
                floor: row.get(5)?,
                next_seq: row.get::<_, i64>(6)? as u64,
                custodial: row.get(7)?,
            })
        })
        .optional()?;
    Ok(row)
}

/// A page of `id`'s postings older than leaf `before`, newest first, with the
/// balance after each one.
fn postings(
    connection: &Connection,
    id: &AccountId,
    before: Option<u64>,
    limit: u32,
) -> Result<Option<PostingsPage>, StoreError> {
    assert!((1..=PAGE_POSTINGS_MAX).contains(&limit), "the HTTP layer bounds the page size");
    let snapshot = connection.unchecked_transaction()?;
    let Some(account) = account(&snapshot, id)? else {
        return Ok(None);
    };
    let before = match before {
        Some(before) => to_i64(before)?,
        None => i64::MAX,
    };
    let newer: i64 = snapshot.query_row(
        "SELECT COALESCE(SUM(amount), 0) FROM postings
          WHERE account = (SELECT num FROM accounts WHERE account = ?1) AND leaf_index >= ?2",
        params![id.as_str(), before],
        |row| row.get(0),
    )?;
    let mut statement = snapshot.prepare_cached(
        "SELECT p.leaf_index, l.accepted_at, l.kind, SUM(p.amount), l.memo,
                (SELECT group_concat(DISTINCT a.account) FROM postings o JOIN accounts a ON a.num = o.account
                  WHERE o.leaf_index = p.leaf_index AND o.account <> p.account)
           FROM postings p JOIN leaves l ON l.leaf_index = p.leaf_index
          WHERE p.account = (SELECT num FROM accounts WHERE account = ?1) AND p.leaf_index < ?2
          GROUP BY p.leaf_index
          ORDER BY p.leaf_index DESC
          LIMIT ?3",
    )?;
    let mut balance_after = account.balance - newer;
    let mut page = Vec::new();
    let rows = statement.query_map(params![id.as_str(), before, i64::from(limit)], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, Option<String>>(5)?,
        ))
    })?;
    for row in rows {
        let (index, accepted_at, kind, amount, memo, others) = row?;
        let counterparties = others.map(|others| others.split(',').map(str::to_owned).collect()).unwrap_or_default();
        page.push(PostingView {
            index: to_u64(index)?,
            accepted_at,
            kind,
            amount,
            balance_after,
            memo,
            counterparties,
        });
        balance_after -= amount;
    }
    let next_before = if page.len() == limit as usize { page.last().map(|posting| posting.index) } else { None };
    Ok(Some(PostingsPage { account: account.account, postings: page, next_before }))
}
