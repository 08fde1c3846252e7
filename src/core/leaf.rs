//! Leaves of the log: the exact bytes that are stored, hashed and served.
//!
//! A leaf is the RFC 8785 form of `{"index", "accepted_at", "command" | "event",
//! "postings"}`. It is built once, by [`encode`], and from then on only its bytes
//! travel: the database stores them, the Merkle tree hashes them, the auditor reads them.

use serde::Serialize;

use crate::core::canonical;
use crate::core::ids::AccountId;
use crate::core::money::format_minor;
use crate::core::policy::Event;
use crate::core::protocol::Envelope;
use crate::core::time::Timestamp;

/// One line of a leaf's postings: an account and a signed amount in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: AccountId,
    pub amount_minor: i64,
}

/// What a leaf records: a client's signed command or a server event.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Command(&'a Envelope),
    Event(&'a Event),
}

#[derive(Serialize)]
struct LeafWire<'a> {
    index: u64,
    accepted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a Envelope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a Event>,
    postings: Vec<PostingWire<'a>>,
}

#[derive(Serialize)]
struct PostingWire<'a> {
    account: &'a str,
    amount: String,
}

/// The canonical bytes of a leaf. The postings must sum to zero.
pub fn encode(index: u64, accepted_at: Timestamp, content: Content<'_>, postings: &[Posting]) -> Vec<u8> {
    assert_zero_sum(postings);
    let (command, event) = match content {
        Content::Command(envelope) => (Some(envelope), None),
        Content::Event(event) => (None, Some(event)),
    };
    let postings = postings
        .iter()
        .map(|posting| PostingWire { account: posting.account.as_str(), amount: format_minor(posting.amount_minor) })
        .collect();
    let wire = LeafWire { index, accepted_at: accepted_at.to_string(), command, event, postings };
    canonical::to_canonical_vec(&wire)
}

/// Postings sum to exactly zero, and none is zero: a programmer error otherwise.
pub fn assert_zero_sum(postings: &[Posting]) {
    let sum: i128 = postings.iter().map(|posting| i128::from(posting.amount_minor)).sum();
    assert_eq!(sum, 0, "postings must sum to zero: {postings:?}");
    assert!(postings.iter().all(|posting| posting.amount_minor != 0), "no posting may be zero: {postings:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_leaf_is_canonical_json() {
        let envelope = Envelope { body: "Ym9keQ==".into(), key: "a2V5".into(), sig: "c2ln".into() };
        let member = AccountId::parse("0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b").unwrap();
        let postings = [
            Posting { account: AccountId::reserve(), amount_minor: -120 },
            Posting { account: member, amount_minor: 120 },
        ];
        let bytes = encode(7, Timestamp::from_unix_ms(0), Content::Command(&envelope), &postings);
        let expected = concat!(
            r#"{"accepted_at":"1970-01-01T00:00:00.000Z","command":{"body":"Ym9keQ==","key":"a2V5","sig":"c2ln"},"#,
            r#""index":7,"postings":[{"account":"reserve","amount":"-1.20"},"#,
            r#"{"account":"0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b","amount":"1.20"}]}"#
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        assert!(canonical::check_canonical(&bytes).is_ok());
    }
}
