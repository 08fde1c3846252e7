//! Canonical JSON (RFC 8785, "JCS") and the strict parser that guards it.
//!
//! Signed bytes must have exactly one reading. [`check_canonical`] parses a body with
//! a parser that refuses duplicate keys (a plain map would keep the last of two
//! silently), refuses non-integer numbers, re-serialises the result in RFC 8785 form
//! and demands that it equals the input byte for byte. The serialisation itself is
//! `serde_json_canonicalizer`'s, checked against the RFC's published test data.

use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays and objects accepted in a body; ours are two levels deep.
pub const DEPTH_MAX: u32 = 32;

/// Why bytes are not a canonical JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the JSON is malformed: {0}")]
    Malformed(String),
    #[error("the key \"{0}\" appears twice in one object; signed JSON must have one reading")]
    DuplicateKey(String),
    #[error("the number {0} is not a whole number; amounts and coordinates are decimal strings such as \"1.50\"")]
    FloatNumber(String),
    #[error("the JSON nests deeper than {DEPTH_MAX} levels")]
    TooDeep,
    #[error(
        "the body is not in RFC 8785 canonical form (keys sorted, no spaces, minimal escapes); sign the canonical bytes"
    )]
    NotCanonical,
}

/// Parses JSON strictly: valid UTF-8, no duplicate keys, nesting at most [`DEPTH_MAX`].
/// Floating-point numbers are allowed here; [`check_canonical`] refuses them.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let strict = StrictValue::deserialize(&mut deserializer).map_err(classify)?;
    deserializer.end().map_err(classify)?;
    Ok(strict.0)
}

/// The RFC 8785 serialisation of any serialisable value.
pub fn to_canonical_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Our values are built from strings, integers, maps and sequences: serialisation
    // cannot fail (no non-string map keys, no non-finite floats).
    serde_json_canonicalizer::to_vec(value).expect("canonical serialisation of a JSON value")
}

/// Checks that `bytes` are a canonical body and returns its parsed value.
pub fn check_canonical(bytes: &[u8]) -> Result<Value, JsonError> {
    let value = parse_strict(bytes)?;
    if let Some(number) = first_float(&value) {
        return Err(JsonError::FloatNumber(number.to_string()));
    }
    if !serializes_to(&value, bytes) {
        return Err(JsonError::NotCanonical);
    }
    Ok(value)
}

/// Parses canonical bytes straight into `T`: the fast path. Accepts exactly when `T`
/// parses and serialises back to the same bytes, which rules out duplicate keys,
/// floats where `T` has none, and every non-canonical spelling; `None` otherwise, and
/// the caller takes the slow path to say precisely what is wrong.
pub fn parse_canonical_typed<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(bytes).ok()?;
    serializes_to(&value, bytes).then_some(value)
}

/// The fastest path, for types whose serde form is already canonical: every struct's
/// fields declared in sorted order, ASCII field names, no floats, no maps, no
/// internally tagged enums. For such a type serde_json's compact output *is* the
/// RFC 8785 form, so bytes that parse into it and serialise back unchanged are
/// canonical, with no sorting done. Each such type has a test that compares its
/// serde form with the RFC 8785 form, with every optional field present, so that a
/// field declared out of order is caught.
pub fn parse_presorted<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(bytes).ok()?;
    let mut comparer = Comparer { rest: bytes, same: true };
    serde_json::to_writer(&mut comparer, &value).ok()?;
    (comparer.same && comparer.rest.is_empty()).then_some(value)
}

/// Whether the RFC 8785 serialisation of `value` is exactly `expected`, compared as it
/// is written, without building it.
pub fn serializes_to<T: Serialize>(value: &T, expected: &[u8]) -> bool {
    let mut comparer = Comparer { rest: expected, same: true };
    let written = serde_json_canonicalizer::to_writer(value, &mut comparer);
    written.is_ok() && comparer.same && comparer.rest.is_empty()
}

/// A writer that checks what is written against the expected bytes.
struct Comparer<'a> {
    rest: &'a [u8],
    same: bool,
}

impl std::io::Write for Comparer<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(bytes) {
            Some(rest) if self.same => self.rest = rest,
            _ => self.same = false,
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first number in `value` that is not an integer, depth first.
fn first_float(value: &Value) -> Option<&Number> {
    match value {
        Value::Number(number) if !(number.is_i64() || number.is_u64()) => Some(number),
        Value::Array(items) => items.iter().find_map(first_float),
        Value::Object(map) => map.values().find_map(first_float),
        _ => None,
    }
}

const DUPLICATE_PREFIX: &str = "covoit-duplicate-key:";
const DEPTH_MESSAGE: &str = "covoit-too-deep";

fn classify(error: serde_json::Error) -> JsonError {
    let message = error.to_string();
    if let Some(rest) = message.strip_prefix(DUPLICATE_PREFIX) {
        let key = rest.rsplit_once(" at line ").map_or(rest, |(key, _)| key);
        return JsonError::DuplicateKey(key.to_owned());
    }
    if message.starts_with(DEPTH_MESSAGE) || message.starts_with("recursion limit exceeded") {
        return JsonError::TooDeep;
    }
    JsonError::Malformed(message)
}

/// A `serde_json::Value` built by a visitor that refuses duplicate keys and deep nesting.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrictValue, D::Error> {
        deserializer.deserialize_any(StrictVisitor { depth: 0 }).map(StrictValue)
    }
}

struct StrictSeed {
    depth: u32,
}

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor { depth: self.depth })
    }
}

struct StrictVisitor {
    depth: u32,
}

impl StrictVisitor {
    fn child<E: de::Error>(&self) -> Result<StrictSeed, E> {
        if self.depth >= DEPTH_MAX {
            return Err(E::custom(DEPTH_MESSAGE));
        }
        Ok(StrictSeed { depth: self.depth + 1 })
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value).map(Value::Number).ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = sequence.next_element_seed(self.child()?)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child()?)?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_PREFIX}{key}")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC8785_CASES: &[(&str, &[u8], &[u8])] = &[
        (
            "french",
            include_bytes!("../../tests/data/rfc8785/input/french.json"),
            include_bytes!("../../tests/data/rfc8785/output/french.json"),
        ),
        (
            "simpleString",
            include_bytes!("../../tests/data/rfc8785/input/simpleString.json"),
            include_bytes!("../../tests/data/rfc8785/output/simpleString.json"),
        ),
        (
            "structures",
            include_bytes!("../../tests/data/rfc8785/input/structures.json"),
            include_bytes!("../../tests/data/rfc8785/output/structures.json"),
        ),
        (
            "unicode",
            include_bytes!("../../tests/data/rfc8785/input/unicode.json"),
            include_bytes!("../../tests/data/rfc8785/output/unicode.json"),
        ),
        (
            "values",
            include_bytes!("../../tests/data/rfc8785/input/values.json"),
            include_bytes!("../../tests/data/rfc8785/output/values.json"),
        ),
        (
            "weird",
            include_bytes!("../../tests/data/rfc8785/input/weird.json"),
            include_bytes!("../../tests/data/rfc8785/output/weird.json"),
        ),
    ];

    #[test]
    fn rfc8785_published_test_data() {
        for (name, input, output) in RFC8785_CASES {
            let value = parse_strict(input).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(String::from_utf8_lossy(&to_canonical_vec(&value)), String::from_utf8_lossy(output), "{name}");
            // The published output is itself canonical; the pretty-printed input is not.
            assert_eq!(to_canonical_vec(&parse_strict(output).unwrap()), *output, "{name}");
            assert_ne!(input, output, "{name}");
        }
    }

    #[test]
    fn rfc8785_published_numbers() {
        let table = include_str!("../../tests/data/rfc8785/numbers.txt");
        let mut cases = 0;
        for line in table.lines().filter(|line| !line.trim().is_empty()) {
            let (bits, expected) = line.split_once(' ').expect("<hex bits> <expected>");
            let number = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
            let value = Value::Number(Number::from_f64(number).unwrap());
            assert_eq!(String::from_utf8(to_canonical_vec(&value)).unwrap(), expected, "bits {bits}");
            cases += 1;
        }
        assert!(cases >= 20, "the number table was read ({cases} cases)");
    }

    fn check(bytes: &str, expected: Result<(), JsonError>) {
        assert_eq!(check_canonical(bytes.as_bytes()).map(|_| ()), expected, "{bytes}");
    }

    #[test]
    fn canonical_bodies() {
        check(r#"{"a":"1","b":2}"#, Ok(()));
        check(r#"{"amount":"1.50","seats":2,"tags":["x",{"k":null}]}"#, Ok(()));
        check(r#"{"\u001F":"x"}"#, Err(JsonError::NotCanonical));
        check(r#"{"\u001f":"x"}"#, Ok(()));
        check(r#"{"b":"1","a":"2"}"#, Err(JsonError::NotCanonical));
        check(r#"{"a": "1"}"#, Err(JsonError::NotCanonical));
        check("{\"a\":\"1\"}\n", Err(JsonError::NotCanonical));
        check(r#"{"a":"\u00e9"}"#, Err(JsonError::NotCanonical));
        check(r#"{"a":"é"}"#, Ok(()));
        check(r#"{"a":-0}"#, Err(JsonError::FloatNumber("-0.0".into())));
        check(r#"{"a":1.5}"#, Err(JsonError::FloatNumber("1.5".into())));
        check(r#"{"a":1.0}"#, Err(JsonError::FloatNumber("1.0".into())));
        check(r#"{"a":1e2}"#, Err(JsonError::FloatNumber("100.0".into())));
        check(r#"{"a":"1","a":"1"}"#, Err(JsonError::DuplicateKey("a".into())));
        check(r#"{"x":{"a":"1","b":"2","a":"3"}}"#, Err(JsonError::DuplicateKey("a".into())));
    }

    #[test]
    fn malformed_and_deep_json() {
        assert!(matches!(check_canonical(b"{"), Err(JsonError::Malformed(_))));
        assert!(matches!(check_canonical(b"{\"a\":\"1\"} x"), Err(JsonError::Malformed(_))));
        assert!(matches!(check_canonical(b"\xff"), Err(JsonError::Malformed(_))));
        assert!(matches!(check_canonical(b"{\"a\":\"\\ud800\"}"), Err(JsonError::Malformed(_))));
        assert!(matches!(check_canonical(b"{\"a\":\"\xc3\x28\"}"), Err(JsonError::Malformed(_))));
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(check_canonical(deep.as_bytes()), Err(JsonError::TooDeep));
        let very_deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(check_canonical(very_deep.as_bytes()), Err(JsonError::TooDeep));
    }
}
