//! Leaves of the log: the exact bytes that are stored, hashed and served.
//!
//! A leaf is the RFC 8785 form of `{"index", "accepted_at", "command" | "event",
//! "postings"}`. It is built once, by [`encode`], and from then on only its bytes
//! travel: the database stores them, the Merkle tree hashes them, the auditor reads them.

use serde::{Deserialize, Serialize};

use crate::core::canonical::{self, JsonError};
use crate::core::ids::AccountId;
use crate::core::money::{format_minor, parse_signed_minor};
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
    // Fields in sorted order, so that a command leaf's serde form is already its
    // RFC 8785 form: see `canonical::parse_presorted`.
    accepted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a Envelope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a Event>,
    index: u64,
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
    assert!(index <= INDEX_MAX, "a leaf index below 2^53, as every JSON reader can hold it");
    let (command, event) = match content {
        Content::Command(envelope) => (Some(envelope), None),
        Content::Event(event) => (None, Some(event)),
    };
    if let Some(envelope) = command {
        return encode_command(index, accepted_at, envelope, postings);
    }
    let postings = postings
        .iter()
        .map(|posting| PostingWire { account: posting.account.as_str(), amount: format_minor(posting.amount_minor) })
        .collect();
    let wire = LeafWire { accepted_at: accepted_at.to_string(), command, event, index, postings };
    // Events are internally tagged enums (their "type" comes first in serde's form).
    canonical::to_canonical_vec(&wire)
}

/// A command leaf, written field by field in sorted order: the writer encodes every
/// command on its way to the log, and serde's escaping scan of the base64 strings
/// showed in its profile. The output is serde's compact form of [`LeafWire`], which is
/// the RFC 8785 form (a property test compares the two for any strings).
fn encode_command(index: u64, accepted_at: Timestamp, envelope: &Envelope, postings: &[Posting]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(envelope.body.len() + envelope.key.len() + envelope.sig.len() + 320);
    bytes.extend_from_slice(b"{\"accepted_at\":");
    write_string(&mut bytes, &accepted_at.to_string());
    bytes.extend_from_slice(b",\"command\":{\"body\":");
    write_string(&mut bytes, &envelope.body);
    bytes.extend_from_slice(b",\"key\":");
    write_string(&mut bytes, &envelope.key);
    bytes.extend_from_slice(b",\"sig\":");
    write_string(&mut bytes, &envelope.sig);
    bytes.extend_from_slice(b"},\"index\":");
    bytes.extend_from_slice(index.to_string().as_bytes());
    bytes.extend_from_slice(b",\"postings\":[");
    for (position, posting) in postings.iter().enumerate() {
        if position > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(b"{\"account\":");
        write_string(&mut bytes, posting.account.as_str());
        bytes.extend_from_slice(b",\"amount\":");
        write_string(&mut bytes, &format_minor(posting.amount_minor));
        bytes.push(b'}');
    }
    bytes.extend_from_slice(b"]}");
    bytes
}

/// A JSON string: copied between quotes when no byte of it needs escaping (base64,
/// ids, amounts and times never do), else written by serde_json.
fn write_string(bytes: &mut Vec<u8>, text: &str) {
    // A fold rather than `all`: no early exit, so the compiler checks many bytes at once.
    let plain = text.bytes().fold(true, |plain, byte| plain & (byte >= 0x20) & (byte != b'"') & (byte != b'\\'));
    if plain {
        bytes.push(b'"');
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'"');
    } else {
        serde_json::to_writer(&mut *bytes, text).expect("a string serializes");
    }
}

/// A leaf read back from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub index: u64,
    pub accepted_at: Timestamp,
    pub content: OwnedContent,
    pub postings: Vec<Posting>,
}

/// What a leaf records, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedContent {
    Command(Envelope),
    Event(Box<Event>),
}

/// The largest leaf index: JSON integers in covoit are below 2^53 (docs/protocol.md §1).
pub const INDEX_MAX: u64 = (1 << 53) - 1;

/// Why bytes are not a leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    #[error("the leaf is not canonical JSON: {0}")]
    Json(JsonError),
    #[error("the leaf's fields are not right: {0}")]
    Fields(String),
    #[error("the leaf must hold exactly one of \"command\" and \"event\"")]
    Content,
    #[error("the leaf's accepted_at is not a canonical time: {0}")]
    Time(String),
    #[error("a posting is not right: {0}")]
    Posting(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafWireOwned {
    // Fields in sorted order: see `canonical::parse_presorted`.
    accepted_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<Envelope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<Event>,
    index: u64,
    postings: Vec<PostingWireOwned>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostingWireOwned {
    account: String,
    amount: String,
}

/// Reads a leaf from its bytes, strictly: canonical JSON, known fields only, one
/// command or one event, canonical times and amounts. Whether its postings balance
/// and match its command is for the state machine to say.
pub fn decode(bytes: &[u8]) -> Result<Leaf, LeafError> {
    // Events are internally tagged (their "type" comes first in serde's form), so
    // only command leaves may take the presorted fast path.
    let fast = canonical::parse_presorted::<LeafWireOwned>(bytes).filter(|wire| wire.event.is_none());
    let wire = match fast {
        Some(wire) => wire,
        None => {
            // The slow path, to say precisely what is wrong.
            let value = canonical::check_canonical(bytes).map_err(LeafError::Json)?;
            let wire: LeafWireOwned =
                serde_json::from_value(value).map_err(|error| LeafError::Fields(error.to_string()))?;
            if !canonical::serializes_to(&wire, bytes) {
                return Err(LeafError::Json(JsonError::NotCanonical));
            }
            wire
        }
    };
    // RFC 8785 writes numbers as IEEE doubles: an index from 2^53 up has no one
    // canonical spelling, and the fast path above would take one that is not canonical.
    if wire.index > INDEX_MAX {
        return Err(LeafError::Fields(format!("the index {} is not below 2^53", wire.index)));
    }
    let content = match (wire.command, wire.event) {
        (Some(envelope), None) => OwnedContent::Command(envelope),
        (None, Some(event)) => OwnedContent::Event(Box::new(event)),
        _ => return Err(LeafError::Content),
    };
    let accepted_at =
        Timestamp::parse_canonical(&wire.accepted_at).map_err(|error| LeafError::Time(error.to_string()))?;
    let postings = wire
        .postings
        .into_iter()
        .map(|posting| {
            let account = AccountId::parse(&posting.account).map_err(|error| LeafError::Posting(error.to_string()))?;
            let amount_minor =
                parse_signed_minor(&posting.amount).map_err(|error| LeafError::Posting(error.to_string()))?;
            Ok(Posting { account, amount_minor })
        })
        .collect::<Result<Vec<Posting>, LeafError>>()?;
    Ok(Leaf { index: wire.index, accepted_at, content, postings })
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
        let leaf = decode(&bytes).unwrap();
        assert_eq!(leaf.index, 7);
        assert_eq!(leaf.postings, postings);
        assert_eq!(leaf.content, OwnedContent::Command(envelope));
    }

    #[test]
    fn the_serde_form_of_a_command_leaf_is_canonical() {
        let wire = LeafWireOwned {
            accepted_at: "1970-01-01T00:00:00.000Z".into(),
            command: Some(Envelope { body: "Ym9keQ==".into(), key: "a2V5".into(), sig: "c2ln".into() }),
            event: None,
            index: 3,
            postings: vec![PostingWireOwned { account: "reserve".into(), amount: "-1.00".into() }],
        };
        assert_eq!(serde_json::to_vec(&wire).unwrap(), canonical::to_canonical_vec(&wire));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, failure_persistence: None, ..Default::default() })]

        /// `encode` writes command leaves in serde's form: it must be the RFC 8785
        /// form for any envelope strings (escapes, controls, U+2028, astral planes),
        /// any index a leaf can have and any amounts.
        #[test]
        fn a_command_leaf_is_encoded_in_its_rfc_8785_form(
            body in "\\PC*|[\\x00-\\x7f\\u{80}-\\u{ff}\\u{2028}\\u{2029}\\u{fffd}\\u{1f600}\"\\\\]{0,40}",
            key in ".*",
            sig in "[ -~]*",
            index in 0..=INDEX_MAX,
            amount in 1_i64..1_000_000_000_000,
            millis in 0_i64..=4_102_444_800_000,
        ) {
            let envelope = Envelope { body, key, sig };
            let member = AccountId::parse("0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b").unwrap();
            let postings = [
                Posting { account: AccountId::reserve(), amount_minor: -amount },
                Posting { account: member, amount_minor: amount },
            ];
            let accepted_at = Timestamp::from_unix_ms(millis);
            let bytes = encode(index, accepted_at, Content::Command(&envelope), &postings);
            let wire = LeafWire {
                accepted_at: accepted_at.to_string(),
                command: Some(&envelope),
                event: None,
                index,
                postings: postings
                    .iter()
                    .map(|posting| PostingWire { account: posting.account.as_str(), amount: format_minor(posting.amount_minor) })
                    .collect(),
            };
            proptest::prop_assert_eq!(&bytes, &canonical::to_canonical_vec(&wire));
            let leaf = decode(&bytes).unwrap();
            proptest::prop_assert_eq!(leaf.content, OwnedContent::Command(envelope));
        }
    }

    #[test]
    fn a_genesis_leaf_in_serde_order_is_not_canonical() {
        let genesis = crate::core::policy::Genesis {
            ledger: "covoit/test".into(),
            currency: crate::core::policy::Currency::default(),
            ledger_key: "a2V5".into(),
            operator_key: "a2V5".into(),
            policy: crate::core::policy::Policy::default(),
        };
        let event = Event::Genesis(Box::new(genesis));
        let canonical = encode(0, Timestamp::from_unix_ms(0), Content::Event(&event), &[]);
        assert!(decode(&canonical).is_ok());
        let wire = LeafWireOwned {
            accepted_at: "1970-01-01T00:00:00.000Z".into(),
            command: None,
            event: Some(event),
            index: 0,
            postings: Vec::new(),
        };
        let serde_order = serde_json::to_vec(&wire).unwrap();
        assert_ne!(serde_order, canonical);
        assert!(decode(&serde_order).is_err(), "the presorted path must not take an event leaf");
    }

    #[test]
    fn leaves_that_are_not_quite_leaves_are_refused() {
        let refused = |text: &str| assert!(decode(text.as_bytes()).is_err(), "{text}");
        let good = r#"{"accepted_at":"1970-01-01T00:00:00.000Z","event":{"type":"genesis"},"index":0,"postings":[]}"#;
        refused(good); // the genesis event lacks its fields
        refused(
            r#"{"accepted_at":"1970-01-01T00:00:00Z","command":{"body":"","key":"","sig":""},"index":0,"postings":[]}"#,
        );
        refused(r#"{"accepted_at":"1970-01-01T00:00:00.000Z","index":0,"postings":[]}"#);
        refused(
            r#"{"accepted_at":"1970-01-01T00:00:00.000Z","command":{"body":"","key":"","sig":""},"index":0,"postings":[{"account":"reserve","amount":"1.5"}]}"#,
        );
        refused(
            r#"{"accepted_at":"1970-01-01T00:00:00.000Z","command":{"body":"","key":"","sig":""},"extra":1,"index":0,"postings":[]}"#,
        );
        refused(
            r#"{"accepted_at":"1970-01-01T00:00:00.000Z","command":{"body":"","key":"","sig":""},"index":-1,"postings":[]}"#,
        );
        let fine = r#"{"accepted_at":"1970-01-01T00:00:00.000Z","command":{"body":"","key":"","sig":""},"index":0,"postings":[{"account":"reserve","amount":"-1.50"}]}"#;
        assert_eq!(decode(fine.as_bytes()).unwrap().postings[0].amount_minor, -150);
    }

    /// Found while fuzzing (fuzz/, targets `canonical` then `leaf`): 2^53 + 1 took the
    /// presorted path although its RFC 8785 form is 9007199254740992.
    #[test]
    fn an_index_from_2_pow_53_is_refused() {
        let leaf = |index: &str| {
            format!(
                r#"{{"accepted_at":"1970-01-01T00:00:00.000Z","command":{{"body":"","key":"","sig":""}},"index":{index},"postings":[]}}"#
            )
        };
        assert_eq!(decode(leaf("9007199254740991").as_bytes()).unwrap().index, INDEX_MAX);
        for index in ["9007199254740992", "9007199254740993", "1152921504606846976", "18446744073709551615"] {
            assert!(matches!(decode(leaf(index).as_bytes()), Err(LeafError::Fields(_))), "{index}");
        }
    }
}
