//! The small validated values every command carries: account ids, sequence numbers,
//! the ledger id, names and memos.
//!
//! Each has private fields and a constructor that returns `Result`, so a value of the
//! type is proof that the check ran. Each has exactly one written form: two spellings
//! of the same account (say, an upper-case UUID) would be two accounts to an auditor.

use std::fmt;
use std::sync::Arc;

/// Longest name or memo, in characters (Unicode scalar values).
pub const TEXT_CHARS_MAX: usize = 140;
/// Longest ledger id, in bytes.
pub const LEDGER_ID_BYTES_MAX: usize = 128;
/// The operator's account id: the desk, which signs issues, approvals and policy.
pub const OPERATOR: &str = "operator";
/// The system account whose negative balance is the currency in circulation.
pub const RESERVE: &str = "reserve";

/// Why a field's value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "\"{0}\" is not an account id; use \"operator\", \"reserve\" or a lower-case UUID such as \"0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b\""
    )]
    Account(String),
    #[error("\"{0}\" is not a sequence number; write a whole number in a string without leading zeros, such as \"7\"")]
    Seq(String),
    #[error("\"{0}\" is not a ledger id; it is 1 to 128 printable ASCII characters without spaces or \"+\"")]
    Ledger(String),
    #[error("the {field} must be 1 to 140 characters, without control characters or spaces at either end")]
    Text { field: &'static str },
    #[error(
        "the {field} \"{text}\" is not an id; use a lower-case UUID such as \"0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b\""
    )]
    RideId { field: &'static str, text: String },
}

/// An account: `operator`, `reserve` or a member's lower-case hyphenated UUID.
///
/// Shared, not copied: the ledger's state, each batch's receipts and postings and the
/// indexer's queue all hold the ids of the same few hundred accounts, so a clone is
/// a reference count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId {
    text: Arc<str>,
}

impl AccountId {
    pub fn parse(text: &str) -> Result<AccountId, IdError> {
        if text == OPERATOR || text == RESERVE {
            return Ok(AccountId { text: text.into() });
        }
        AccountId::parse_member(text)
    }

    /// Parses a member's id: a UUID in its canonical lower-case hyphenated form.
    pub fn parse_member(text: &str) -> Result<AccountId, IdError> {
        let error = || IdError::Account(text.chars().take(64).collect());
        let uuid = uuid::Uuid::try_parse(text).map_err(|_| error())?;
        if uuid.hyphenated().to_string() != text {
            return Err(error());
        }
        Ok(AccountId { text: text.into() })
    }

    pub fn operator() -> AccountId {
        AccountId { text: OPERATOR.into() }
    }

    pub fn reserve() -> AccountId {
        AccountId { text: RESERVE.into() }
    }

    pub fn new_member() -> AccountId {
        AccountId { text: uuid::Uuid::new_v4().hyphenated().to_string().into() }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_operator(&self) -> bool {
        self.as_str() == OPERATOR
    }

    pub fn is_reserve(&self) -> bool {
        self.as_str() == RESERVE
    }

    /// A member is anyone but the operator and the reserve.
    pub fn is_member(&self) -> bool {
        !self.is_operator() && !self.is_reserve()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

/// The id of a ride object (an offer, a request, a booking): a UUID its author chose,
/// in lower-case hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id {
    text: String,
}

impl Id {
    pub fn parse(field: &'static str, text: &str) -> Result<Id, IdError> {
        AccountId::parse_member(text)
            .map(|_| Id { text: text.to_owned() })
            .map_err(|_| IdError::RideId { field, text: text.chars().take(64).collect() })
    }

    /// An id above every other, to bound ranges.
    pub fn max() -> Id {
        Id { text: "ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned() }
    }

    pub fn new_random() -> Id {
        Id { text: uuid::Uuid::new_v4().hyphenated().to_string() }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Id {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

/// A signer's sequence number, written on the wire as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq {
    value: u64,
}

impl Seq {
    pub const ZERO: Seq = Seq { value: 0 };

    pub fn parse(text: &str) -> Result<Seq, IdError> {
        let error = || IdError::Seq(text.chars().take(32).collect());
        let digits = !text.is_empty() && text.len() <= 19 && text.bytes().all(|byte| byte.is_ascii_digit());
        if !digits || (text.len() > 1 && text.starts_with('0')) {
            return Err(error());
        }
        text.parse::<u64>().map(Seq::new).map_err(|_| error())
    }

    pub const fn new(value: u64) -> Seq {
        Seq { value }
    }

    pub const fn value(self) -> u64 {
        self.value
    }

    pub const fn next(self) -> Seq {
        Seq { value: self.value + 1 }
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.value)
    }
}

/// The ledger's id: the origin line of its checkpoints and the replay guard of every
/// command. Printable ASCII without spaces or "+", as C2SP origins and key names need.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerId {
    text: String,
}

impl LedgerId {
    pub fn parse(text: &str) -> Result<LedgerId, IdError> {
        let printable = text.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'+');
        if text.is_empty() || text.len() > LEDGER_ID_BYTES_MAX || !printable {
            return Err(IdError::Ledger(text.chars().take(64).collect()));
        }
        Ok(LedgerId { text: text.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for LedgerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

/// Free text a person wrote: a display name or a memo. Shared like [`AccountId`]:
/// an account's name goes with every copy of the account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text {
    text: Arc<str>,
}

impl Text {
    /// `field` names the field in the error ("name", "memo").
    pub fn parse(field: &'static str, text: &str) -> Result<Text, IdError> {
        let count = text.chars().count();
        let clean = !text.chars().any(char::is_control) && text.trim() == text;
        if count == 0 || count > TEXT_CHARS_MAX || !clean {
            return Err(IdError::Text { field });
        }
        Ok(Text { text: text.into() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        let valid = ["operator", "reserve", "0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b"];
        for text in valid {
            assert_eq!(AccountId::parse(text).unwrap().as_str(), text);
        }
        let invalid = [
            "",
            "Operator",
            "0F8E2A5C-3B1D-4C6E-9A7F-2D4B6C8E0A1B",
            "0f8e2a5c3b1d4c6e9a7f2d4b6c8e0a1b",
            "{0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b}",
            "urn:uuid:0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b",
            "alice",
        ];
        for text in invalid {
            assert!(AccountId::parse(text).is_err(), "{text}");
        }
        assert!(AccountId::parse_member("operator").is_err());
        assert!(AccountId::new_member().is_member());
    }

    #[test]
    fn sequence_numbers() {
        assert_eq!(Seq::parse("0").unwrap().value(), 0);
        assert_eq!(Seq::parse("42").unwrap().value(), 42);
        assert_eq!(Seq::parse("9999999999999999999").unwrap().value(), 9_999_999_999_999_999_999);
        for text in ["", "01", "-1", "+1", "1.0", "1e3", " 1", "99999999999999999999", "x"] {
            assert!(Seq::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn ledger_ids_and_texts() {
        assert!(LedgerId::parse("covoit/ayen/2f1c").is_ok());
        for text in ["", "with space", "a+b", "tab\there", "é"] {
            assert!(LedgerId::parse(text).is_err(), "{text}");
        }
        assert!(LedgerId::parse(&"x".repeat(129)).is_err());
        assert!(Text::parse("name", "Élise Martin").is_ok());
        assert!(Text::parse("memo", &"é".repeat(140)).is_ok());
        for text in ["", " Élise", "Élise ", "line\nbreak", "\u{7}"] {
            assert!(Text::parse("name", text).is_err(), "{text:?}");
        }
        assert!(Text::parse("memo", &"é".repeat(141)).is_err());
    }
}

/// Ids are stored and served as their strings.
macro_rules! serde_as_string {
    ($type:ty, $parse:expr) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_string!(AccountId, AccountId::parse);
serde_as_string!(Id, |text: &str| Id::parse("id", text));
serde_as_string!(Text, |text: &str| Text::parse("text", text));
