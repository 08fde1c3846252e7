//! The JSON shapes of successful replies, built by hand from the store's views.
//!
//! Amounts and sequence numbers are decimal strings, as the wire contract says;
//! leaf indexes and sizes are integers.

use serde::Serialize;

use crate::core::leaf::Posting;
use crate::core::merkle::Hash;
use crate::core::money::format_minor;
use crate::core::policy::{Currency, Policy};
use crate::core::protocol::base64_encode;
use crate::store::read::{AccountView, LedgerView, PostingsPage};
use crate::store::writer::Receipt;

#[derive(Serialize)]
pub struct ReceiptReply {
    index: u64,
    tx: String,
    accepted_at: String,
    account: String,
    seq: String,
    postings: Vec<PostingReply>,
}

#[derive(Serialize)]
pub struct PostingReply {
    account: String,
    amount: String,
}

pub fn receipt(receipt: &Receipt) -> ReceiptReply {
    ReceiptReply {
        index: receipt.index,
        tx: base64_encode(&receipt.tx),
        accepted_at: receipt.accepted_at.to_string(),
        account: receipt.account.to_string(),
        seq: receipt.seq.to_string(),
        postings: receipt.postings.iter().map(posting).collect(),
    }
}

fn posting(posting: &Posting) -> PostingReply {
    PostingReply { account: posting.account.to_string(), amount: format_minor(posting.amount_minor) }
}

#[derive(Serialize)]
pub struct LedgerReply<'a> {
    ledger: &'a str,
    currency: &'a Currency,
    ledger_key: &'a str,
    operator_key: &'a str,
    policy: &'a Policy,
    size: u64,
}

pub fn ledger(view: &LedgerView) -> LedgerReply<'_> {
    LedgerReply {
        ledger: &view.genesis.ledger,
        currency: &view.genesis.currency,
        ledger_key: &view.genesis.ledger_key,
        operator_key: &view.genesis.operator_key,
        policy: &view.policy,
        size: view.size,
    }
}

#[derive(Serialize)]
pub struct AccountReply<'a> {
    account: &'a str,
    name: Option<&'a str>,
    status: &'a str,
    balance: String,
    available: String,
    held: String,
    floor: Option<String>,
    next_seq: String,
}

pub fn account(view: &AccountView) -> AccountReply<'_> {
    AccountReply {
        account: &view.account,
        name: view.name.as_deref(),
        status: &view.status,
        balance: format_minor(view.balance),
        available: format_minor(view.balance - view.held),
        held: format_minor(view.held),
        floor: view.floor.map(format_minor),
        next_seq: view.next_seq.to_string(),
    }
}

#[derive(Serialize)]
pub struct PostingsReply<'a> {
    account: &'a str,
    postings: Vec<HistoryLine<'a>>,
    next_before: Option<u64>,
}

#[derive(Serialize)]
pub struct HistoryLine<'a> {
    index: u64,
    accepted_at: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    amount: String,
    balance_after: String,
    memo: Option<&'a str>,
    counterparties: &'a [String],
}

pub fn postings(page: &PostingsPage) -> PostingsReply<'_> {
    let postings = page
        .postings
        .iter()
        .map(|line| HistoryLine {
            index: line.index,
            accepted_at: &line.accepted_at,
            kind: &line.kind,
            amount: format_minor(line.amount),
            balance_after: format_minor(line.balance_after),
            memo: line.memo.as_deref(),
            counterparties: &line.counterparties,
        })
        .collect();
    PostingsReply { account: &page.account, postings, next_before: page.next_before }
}

#[derive(Serialize)]
pub struct HealthReply {
    status: &'static str,
    size: u64,
}

pub fn health(view: &LedgerView) -> HealthReply {
    HealthReply { status: "ok", size: view.size }
}

#[derive(Serialize)]
pub struct InclusionReply {
    index: u64,
    size: u64,
    hashes: Vec<String>,
}

pub fn inclusion(index: u64, size: u64, hashes: &[Hash]) -> InclusionReply {
    InclusionReply { index, size, hashes: hashes.iter().map(|hash| base64_encode(hash)).collect() }
}

#[derive(Serialize)]
pub struct ConsistencyReply {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

pub fn consistency(from: u64, to: u64, hashes: &[Hash]) -> ConsistencyReply {
    ConsistencyReply { from, to, hashes: hashes.iter().map(|hash| base64_encode(hash)).collect() }
}
