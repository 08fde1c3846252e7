//! Instants as the log writes them: RFC 3339 in UTC, to the millisecond.
//!
//! The core never reads a clock. Time enters as data: a leaf's `accepted_at`, a
//! command's `not_after`. [`Timestamp`] keeps milliseconds since the Unix epoch and
//! has one written form, so an auditor can check that a leaf's time is canonical.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

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

    /// Parses the one form its `Display` writes, and nothing else.
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
        match self.written_fast() {
            Some(bytes) => formatter.write_str(std::str::from_utf8(&bytes).expect("ASCII digits")),
            None => formatter.write_str(&self.written_by_time_crate()?),
        }
    }
}

impl Timestamp {
    /// The written form of an instant in years 0000–9999, by arithmetic: every leaf,
    /// receipt and reply writes one, and the `time` crate's general formatter showed
    /// in profiles. The test below holds the two to the same output.
    fn written_fast(self) -> Option<[u8; 24]> {
        const MS_PER_DAY: i64 = 86_400_000;
        let days = self.unix_ms.div_euclid(MS_PER_DAY);
        let ms_of_day = self.unix_ms.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut bytes = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut value: i64| {
            for position in (at..at + width).rev() {
                bytes[position] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, ms_of_day / 3_600_000);
        put(14, 2, ms_of_day / 60_000 % 60);
        put(17, 2, ms_of_day / 1000 % 60);
        put(20, 3, ms_of_day % 1000);
        Some(bytes)
    }

    fn written_by_time_crate(self) -> Result<String, fmt::Error> {
        let nanos = i128::from(self.unix_ms) * 1_000_000;
        let instant = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| fmt::Error)?;
        let layout = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        instant.to_offset(UtcOffset::UTC).format(&layout).map_err(|_| fmt::Error)
    }
}

/// (year, month, day) of the proleptic Gregorian calendar, `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_canonical(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for dates as "YYYY-MM-DD".
pub mod date_text {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(date: &time::Date, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_date(*date))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<time::Date, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_date(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for optional dates as "YYYY-MM-DD" or null.
pub mod optional_date_text {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(date: &Option<time::Date>, serializer: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => serializer.serialize_str(&super::format_date(*date)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<time::Date>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| super::parse_date(&text).map_err(serde::de::Error::custom)).transpose()
    }
}

/// A calendar date as written on the wire: "2026-11-25".
pub fn parse_date(text: &str) -> Result<Date, TimeError> {
    let error = || TimeError { text: text.to_owned() };
    if text.len() != 10 {
        return Err(error());
    }
    Date::parse(text, format_description!("[year]-[month]-[day]")).map_err(|_| error())
}

pub fn format_date(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// A minute of the day as written on the wire: "07:30".
pub fn parse_minute_of_day(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|byte| byte.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return None;
    }
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

/// The local time of a scheme: a winter offset from UTC and, optionally, EU summer
/// time (one hour more from the last Sunday of March to the last Sunday of October,
/// switching at 01:00 UTC), the rule all of the EU has followed since 1996.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    offset_minutes: i32,
    eu_summer_time: bool,
}

impl Zone {
    /// `None` if the offset is beyond ±14 hours.
    pub fn new(offset_minutes: i32, eu_summer_time: bool) -> Option<Zone> {
        (offset_minutes.abs() <= 14 * 60).then_some(Zone { offset_minutes, eu_summer_time })
    }

    /// The offset from UTC at an instant, minutes.
    pub fn offset_at(self, instant: Timestamp) -> i32 {
        self.offset_minutes + if self.eu_summer_time && in_eu_summer_time(instant) { 60 } else { 0 }
    }

    /// The local calendar date at an instant.
    pub fn local_date(self, instant: Timestamp) -> Date {
        let local = instant.plus_ms(i64::from(self.offset_at(instant)) * 60_000);
        utc_date_time(local).date()
    }

    /// The instant a local date and minute of day name. In the hour that summer time
    /// skips, the winter reading is taken; in the hour it repeats, the summer one.
    pub fn to_instant(self, date: Date, minute_of_day: u16) -> Timestamp {
        let naive = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
        let naive = Timestamp::from_unix_ms(naive.unix_timestamp() * 1000 + i64::from(minute_of_day) * 60_000);
        let winter = naive.plus_ms(-i64::from(self.offset_minutes) * 60_000);
        let summer = winter.plus_ms(-3_600_000);
        if self.eu_summer_time && in_eu_summer_time(summer) { summer } else { winter }
    }
}

/// The day of the week of a date, Monday first (0) to Sunday (6).
pub fn weekday_index(date: Date) -> u8 {
    date.weekday().number_days_from_monday()
}

fn utc_date_time(instant: Timestamp) -> OffsetDateTime {
    let nanos = i128::from(instant.unix_ms()) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn in_eu_summer_time(instant: Timestamp) -> bool {
    let year = utc_date_time(instant).year();
    let starts = last_sunday_at_one(year, Month::March);
    let ends = last_sunday_at_one(year, Month::October);
    (starts..ends).contains(&instant)
}

/// 01:00 UTC on the last Sunday of a month.
fn last_sunday_at_one(year: i32, month: Month) -> Timestamp {
    let mut day = Date::from_calendar_date(year, month, month.length(year)).expect("a valid date");
    while day.weekday() != Weekday::Sunday {
        day = day.previous_day().expect("a valid date");
    }
    let instant = PrimitiveDateTime::new(day, Time::from_hms(1, 0, 0).expect("01:00")).assume_utc();
    Timestamp::from_unix_ms(instant.unix_timestamp() * 1000)
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
    fn local_time_in_france() {
        let paris = Zone::new(60, true).unwrap();
        let instant = |text: &str| Timestamp::parse(text).unwrap();
        let date = |text: &str| parse_date(text).unwrap();
        // 07:30 in winter is 06:30 UTC, in summer 05:30 UTC.
        assert_eq!(paris.to_instant(date("2026-11-25"), 7 * 60 + 30), instant("2026-11-25T06:30:00Z"));
        assert_eq!(paris.to_instant(date("2026-07-14"), 7 * 60 + 30), instant("2026-07-14T05:30:00Z"));
        // 2026: summer time from 29 March to 25 October.
        assert_eq!(paris.offset_at(instant("2026-03-29T00:59:59Z")), 60);
        assert_eq!(paris.offset_at(instant("2026-03-29T01:00:00Z")), 120);
        assert_eq!(paris.offset_at(instant("2026-10-25T00:59:59Z")), 120);
        assert_eq!(paris.offset_at(instant("2026-10-25T01:00:00Z")), 60);
        assert_eq!(paris.local_date(instant("2026-11-25T23:30:00Z")), date("2026-11-26"));
        assert_eq!(paris.local_date(instant("2026-11-25T22:59:00Z")), date("2026-11-25"));
        // The skipped hour reads as winter time; the repeated one as summer time.
        assert_eq!(paris.to_instant(date("2026-03-29"), 2 * 60 + 30), instant("2026-03-29T01:30:00Z"));
        assert_eq!(paris.to_instant(date("2026-10-25"), 2 * 60 + 30), instant("2026-10-25T00:30:00Z"));
        let utc = Zone::new(0, false).unwrap();
        assert_eq!(utc.to_instant(date("2026-07-14"), 0), instant("2026-07-14T00:00:00Z"));
        assert_eq!(weekday_index(date("2026-11-25")), 2, "a Wednesday");
        assert_eq!(parse_minute_of_day("07:30"), Some(450));
        for bad in ["7:30", "24:00", "07:60", "0730", "07:30:00"] {
            assert_eq!(parse_minute_of_day(bad), None, "{bad}");
        }
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_date("2026-2-3").is_err());
        assert_eq!(format_date(date("2026-02-03")), "2026-02-03");
    }

    #[test]
    fn the_fast_form_is_the_time_crates() {
        let year_0 = -62_167_219_200_000i64;
        let year_10000 = 253_402_300_800_000i64;
        let mut edges = vec![0, -1, 1, year_0, year_10000 - 1, 951_782_400_000, 951_868_799_999, 1_795_629_600_123];
        // Every day's first and last millisecond over eight centuries around 2000: two
        // whole 400-year cycles of the calendar (leap days, century years).
        for day in -146_097i64..146_097 {
            let start = day * 86_400_000 + 946_684_800_000;
            edges.extend([start, start - 1]);
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            edges.push(year_0 + (seed % (year_10000 - year_0) as u64) as i64);
        }
        for unix_ms in edges {
            let timestamp = Timestamp::from_unix_ms(unix_ms);
            let fast = timestamp.written_fast().expect("years 0000-9999");
            assert_eq!(std::str::from_utf8(&fast).unwrap(), timestamp.written_by_time_crate().unwrap(), "{unix_ms}");
        }
        // Outside years 0000-9999 the time crate writes it.
        assert!(Timestamp::from_unix_ms(year_0 - 1).written_fast().is_none());
        assert!(Timestamp::from_unix_ms(year_10000).written_fast().is_none());
        assert_eq!(Timestamp::from_unix_ms(year_0 - 1).to_string(), "-0001-12-31T23:59:59.999Z");
    }

    #[test]
    fn canonical_form_only() {
        assert!(Timestamp::parse_canonical("2026-11-25T18:00:00.000Z").is_ok());
        assert!(Timestamp::parse_canonical("2026-11-25T18:00:00Z").is_err());
        assert!(Timestamp::parse_canonical("2026-11-25T18:00:00.0000Z").is_err());
    }
}
