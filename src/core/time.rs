//! Instants as the log writes them: RFC 3339 in UTC, to the millisecond.
//!
//! The core never reads a clock. Time enters as data: a leaf's `accepted_at`, a
//! command's `not_after`. [`Timestamp`] keeps milliseconds since the Unix epoch and
//! has one written form, so an auditor can check that a leaf's time is canonical.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Why a string is not an RFC 3339 UTC instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{text}\" is not an RFC 3339 time in UTC; write it like \"2026-11-25T18:00:00Z\" (with a final Z)")]
pub struct TimeError {
    text: String,
}

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_ms: i64,
}

impl Timestamp {
    pub const fn from_unix_ms(unix_ms: i64) -> Timestamp {
        Timestamp { unix_ms }
    }

    pub const fn unix_ms(self) -> i64 {
        self.unix_ms
    }

    /// Parses RFC 3339 with a `Z` offset and any number of fractional digits;
    /// sub-millisecond digits are dropped (truncated toward the past).
    pub fn parse(text: &str) -> Result<Timestamp, TimeError> {
        let error = || TimeError { text: text.to_owned() };
        if !text.ends_with('Z') || text.as_bytes().get(10) != Some(&b'T') || text.len() > 40 {
            return Err(error());
        }
        // RFC 3339 allows a leap second (":60"), which the parser would fold into the
        // next instant; no covoit time has one.
        if text.get(17..19) == Some("60") {
            return Err(error());
        }
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| error())?;
        let unix_ms = parsed.unix_timestamp_nanos().div_euclid(1_000_000);
        let unix_ms = i64::try_from(unix_ms).map_err(|_| error())?;
        Ok(Timestamp { unix_ms })
    }

    /// Parses the one form [`Timestamp::to_string`] writes, and nothing else.
    pub fn parse_canonical(text: &str) -> Result<Timestamp, TimeError> {
        let timestamp = Timestamp::parse(text)?;
        if timestamp.to_string() != text {
            return Err(TimeError { text: text.to_owned() });
        }
        Ok(timestamp)
    }

    /// This instant plus some milliseconds, saturating at the representable range.
    pub fn plus_ms(self, delta_ms: i64) -> Timestamp {
        Timestamp { unix_ms: self.unix_ms.saturating_add(delta_ms) }
    }
}

impl fmt::Display for Timestamp {
    /// Always `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.unix_ms) * 1_000_000;
        let instant = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| fmt::Error)?;
        let layout = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        let text = instant.to_offset(UtcOffset::UTC).format(&layout).map_err(|_| fmt::Error)?;
        formatter.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<(i64, &str)>) {
        let parsed = Timestamp::parse(text);
        match expected {
            Some((unix_ms, written)) => {
                let timestamp = parsed.unwrap_or_else(|error| panic!("{error}"));
                assert_eq!(timestamp.unix_ms(), unix_ms, "{text}");
                assert_eq!(timestamp.to_string(), written, "{text}");
            }
            None => assert!(parsed.is_err(), "{text} should be refused"),
        }
    }

    #[test]
    fn rfc3339_utc() {
        check("1970-01-01T00:00:00Z", Some((0, "1970-01-01T00:00:00.000Z")));
        check("2026-11-25T18:00:00Z", Some((1_795_629_600_000, "2026-11-25T18:00:00.000Z")));
        check("2026-11-25T18:00:00.5Z", Some((1_795_629_600_500, "2026-11-25T18:00:00.500Z")));
        check("2026-11-25T18:00:00.123456Z", Some((1_795_629_600_123, "2026-11-25T18:00:00.123Z")));
        check("1969-12-31T23:59:59.9999Z", Some((-1, "1969-12-31T23:59:59.999Z")));
        check("2026-11-25T18:00:00+00:00", None);
        check("2026-11-25T19:00:00+01:00", None);
        check("2026-11-25 18:00:00Z", None);
        check("2026-11-25T18:00Z", None);
        check("2026-13-25T18:00:00Z", None);
        check("tomorrow", None);
        check("2016-12-31T23:59:60Z", None);
        check("2026-11-25t18:00:00Z", None);
        check("2026-11-25T18:00:00z", None);
        check("", None);
    }

    #[test]
    fn canonical_form_only() {
        assert!(Timestamp::parse_canonical("2026-11-25T18:00:00.000Z").is_ok());
        assert!(Timestamp::parse_canonical("2026-11-25T18:00:00Z").is_err());
        assert!(Timestamp::parse_canonical("2026-11-25T18:00:00.0000Z").is_err());
    }
}
