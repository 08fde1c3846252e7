//! RFC 8785: the strict parser and the canonical check. No panic; bytes the check
//! accepts are exactly the canonical form of what they parse to; the canonical form of
//! anything the strict parser reads (without floats, with integers of at most 2^53,
//! which RFC 8785 writes exactly) passes the check and reads back the same; and the
//! fast path of command bodies accepts nothing the check refuses.
#![no_main]

use covoit::core::body::BodyFields;
use covoit::core::canonical::{self, JsonError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Whether every integer in `value` is at most 2^53 in magnitude: RFC 8785 writes
/// numbers as IEEE doubles, so 2^53 + 1 comes out as 9007199254740992.
fn exact(value: &Value) -> bool {
    const LIMIT: u64 = 1 << 53;
    match value {
        Value::Number(number) => {
            number.as_u64().is_none_or(|n| n <= LIMIT) && number.as_i64().is_none_or(|n| n.unsigned_abs() <= LIMIT)
        }
        Value::Array(items) => items.iter().all(exact),
        Value::Object(map) => map.values().all(exact),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let checked = canonical::check_canonical(data);
    if let Ok(value) = &checked {
        assert_eq!(canonical::to_canonical_vec(value), data, "accepted bytes are their own canonical form");
    }
    if let Some(value) = canonical::parse_strict(data).ok().filter(exact) {
        // check_canonical parses first, then refuses floats: here, only for floats.
        let has_float = matches!(checked, Err(JsonError::FloatNumber(_)));
        let canonical_bytes = canonical::to_canonical_vec(&value);
        match canonical::check_canonical(&canonical_bytes) {
            // A float such as 1.0 is written 1, which reads back as an integer.
            Ok(again) => assert!(has_float || again == value, "the canonical form reads back as the same value"),
            Err(JsonError::FloatNumber(_)) => assert!(has_float, "a float appeared in the canonical form"),
            Err(error) => panic!("the canonical form of a strictly parsed value is refused: {error}"),
        }
    }
    if canonical::parse_presorted::<BodyFields>(data).is_some() {
        assert!(checked.is_ok(), "parse_presorted::<BodyFields> accepted non-canonical bytes");
    }
});
