//! Money: amounts and floors as they travel on the wire and as the ledger keeps them.
//!
//! On the wire an amount is a decimal string with at most two decimals ("12.30",
//! "0.06"); inside, it is a whole number of minor units (cents) in an `i64`. Parsing
//! is strict on purpose: a form we would have to guess about (a sign, a third decimal,
//! a leading zero, an exponent) is refused with a sentence, never rounded.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Decimals of every amount; the currency's minor unit is 10^-MINOR_DIGITS.
pub const MINOR_DIGITS: u32 = 2;
/// The largest amount one command may move: 1,000,000.00.
pub const AMOUNT_MINOR_MAX: i64 = 100_000_000;
/// The lowest floor (credit line) the operator may set: -1,000,000.00.
pub const FLOOR_MINOR_MIN: i64 = -AMOUNT_MINOR_MAX;
/// Longest decimal string we look at; anything longer is refused before parsing.
const TEXT_BYTES_MAX: usize = 16;

/// Why a decimal string is not a valid amount or floor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("the amount is empty; write it as a decimal string such as \"12.30\"")]
    Empty,
    #[error(
        "\"{0}\" is not a decimal amount; write digits with an optional point and at most two decimals, such as \"12.30\""
    )]
    NotDecimal(String),
    #[error("\"{0}\" has more than two decimals; amounts are counted in cents and never rounded")]
    TooManyDecimals(String),
    #[error("\"{0}\" has a sign; an amount is always positive, the command says which way it goes")]
    Signed(String),
    #[error("the amount is zero; a command must move at least 0.01")]
    Zero,
    #[error("\"{0}\" is over the limit of 1000000.00 for one command")]
    TooLarge(String),
    #[error("the floor \"{0}\" is above zero; a floor is 0 or a negative credit line such as \"-50.00\"")]
    FloorPositive(String),
    #[error("the floor \"{0}\" is below the lowest credit line allowed, -1000000.00")]
    FloorTooLow(String),
}

/// A positive amount of money, at most [`AMOUNT_MINOR_MAX`] minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount {
    minor: i64,
}

impl Amount {
    /// Parses the wire form: digits, optionally a point and one or two decimals.
    pub fn parse(text: &str) -> Result<Amount, MoneyError> {
        if text.starts_with(['-', '+']) {
            return Err(MoneyError::Signed(text.to_owned()));
        }
        let minor = parse_unsigned_minor(text)?;
        Amount::from_minor(minor).map_err(|error| match error {
            MoneyError::TooLarge(_) => MoneyError::TooLarge(text.to_owned()),
            other => other,
        })
    }

    /// An amount from minor units; refuses zero, negatives and amounts over the limit.
    pub fn from_minor(minor: i64) -> Result<Amount, MoneyError> {
        if minor == 0 {
            return Err(MoneyError::Zero);
        }
        if minor < 0 {
            return Err(MoneyError::Signed(format_minor(minor)));
        }
        if minor > AMOUNT_MINOR_MAX {
            return Err(MoneyError::TooLarge(format_minor(minor)));
        }
        Ok(Amount { minor })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&format_minor(self.minor))
    }
}

impl FromStr for Amount {
    type Err = MoneyError;
    fn from_str(text: &str) -> Result<Amount, MoneyError> {
        Amount::parse(text)
    }
}

/// The lowest balance a member account may reach, counting holds: zero or a credit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Floor {
    minor: i64,
}

impl Floor {
    /// The default floor of every member account.
    pub const ZERO: Floor = Floor { minor: 0 };

    /// Parses the wire form: "0", "0.00" or a negative decimal such as "-50.00".
    pub fn parse(text: &str) -> Result<Floor, MoneyError> {
        if text.starts_with('+') {
            return Err(MoneyError::NotDecimal(text.to_owned()));
        }
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let magnitude = parse_unsigned_minor(digits).map_err(|error| match error {
            MoneyError::NotDecimal(_) => MoneyError::NotDecimal(text.to_owned()),
            MoneyError::TooManyDecimals(_) => MoneyError::TooManyDecimals(text.to_owned()),
            other => other,
        })?;
        if !negative && magnitude > 0 {
            return Err(MoneyError::FloorPositive(text.to_owned()));
        }
        Floor::from_minor(-magnitude).map_err(|_| MoneyError::FloorTooLow(text.to_owned()))
    }

    /// A floor from minor units: between [`FLOOR_MINOR_MIN`] and 0.
    pub fn from_minor(minor: i64) -> Result<Floor, MoneyError> {
        if minor > 0 {
            return Err(MoneyError::FloorPositive(format_minor(minor)));
        }
        if minor < FLOOR_MINOR_MIN {
            return Err(MoneyError::FloorTooLow(format_minor(minor)));
        }
        Ok(Floor { minor })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }
}

impl fmt::Display for Floor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&format_minor(self.minor))
    }
}

/// Formats minor units as the canonical wire string: always two decimals, "-" when
/// negative, never "+": `1230` → "12.30", `-6` → "-0.06".
pub fn format_minor(minor: i64) -> String {
    Decimal::new(minor, MINOR_DIGITS).to_string()
}

/// Parses a posting's amount: the canonical form [`format_minor`] writes ("-1.20",
/// "3.00"), and nothing else.
pub fn parse_signed_minor(text: &str) -> Result<i64, MoneyError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = parse_unsigned_minor(digits).map_err(|_| MoneyError::NotDecimal(text.to_owned()))?;
    let minor = if negative { -magnitude } else { magnitude };
    if format_minor(minor) != text {
        return Err(MoneyError::NotDecimal(text.to_owned()));
    }
    Ok(minor)
}

/// Parses an unsigned decimal string with at most two decimals into minor units.
///
/// The grammar is `(0|[1-9][0-9]*)(\.[0-9]{1,2})?`: no sign, no exponent, no
/// thousands separator, no leading zero, no bare point. The checked string is then
/// read by `rust_decimal`, whose own parser is more lenient than ours.
fn parse_unsigned_minor(text: &str) -> Result<i64, MoneyError> {
    if text.is_empty() {
        return Err(MoneyError::Empty);
    }
    if text.starts_with(['-', '+']) {
        return Err(MoneyError::Signed(text.to_owned()));
    }
    if text.len() > TEXT_BYTES_MAX {
        return Err(MoneyError::TooLarge(text.to_owned()));
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits_only = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !digits_only(whole) || (whole.len() > 1 && whole.starts_with('0')) {
        return Err(MoneyError::NotDecimal(text.to_owned()));
    }
    if let Some(fraction) = fraction {
        if !digits_only(fraction) {
            return Err(MoneyError::NotDecimal(text.to_owned()));
        }
        if fraction.len() > MINOR_DIGITS as usize {
            return Err(MoneyError::TooManyDecimals(text.to_owned()));
        }
    }
    let mut decimal = Decimal::from_str_exact(text).map_err(|_| MoneyError::TooLarge(text.to_owned()))?;
    decimal.rescale(MINOR_DIGITS);
    assert_eq!(decimal.scale(), MINOR_DIGITS);
    i64::try_from(decimal.mantissa()).map_err(|_| MoneyError::TooLarge(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_amount(text: &str, expected: Result<i64, MoneyError>) {
        assert_eq!(Amount::parse(text).map(Amount::minor), expected, "amount {text:?}");
    }

    fn check_floor(text: &str, expected: Result<i64, MoneyError>) {
        assert_eq!(Floor::parse(text).map(Floor::minor), expected, "floor {text:?}");
    }

    #[test]
    fn valid_amounts() {
        check_amount("0.01", Ok(1));
        check_amount("0.06", Ok(6));
        check_amount("0.1", Ok(10));
        check_amount("1", Ok(100));
        check_amount("12.3", Ok(1230));
        check_amount("12.30", Ok(1230));
        check_amount("999999.99", Ok(99_999_999));
        check_amount("1000000", Ok(100_000_000));
        check_amount("1000000.00", Ok(100_000_000));
    }

    #[test]
    fn invalid_amounts() {
        let not_decimal = |text: &str| Err(MoneyError::NotDecimal(text.to_owned()));
        check_amount("", Err(MoneyError::Empty));
        check_amount("0", Err(MoneyError::Zero));
        check_amount("0.00", Err(MoneyError::Zero));
        check_amount("0.0", Err(MoneyError::Zero));
        check_amount("-1.00", Err(MoneyError::Signed("-1.00".into())));
        check_amount("+1.00", Err(MoneyError::Signed("+1.00".into())));
        check_amount("-0", Err(MoneyError::Signed("-0".into())));
        check_amount("1.001", Err(MoneyError::TooManyDecimals("1.001".into())));
        check_amount("0.005", Err(MoneyError::TooManyDecimals("0.005".into())));
        check_amount("1000000.01", Err(MoneyError::TooLarge("1000000.01".into())));
        check_amount("99999999999", Err(MoneyError::TooLarge("99999999999".into())));
        check_amount("123456789012345678901234", Err(MoneyError::TooLarge("123456789012345678901234".into())));
        for text in [
            "1.", ".5", "01", "00.10", "1e3", "1E3", "1,00", "1 000", " 1", "1 ", "abc", "1.2.3", "0x10", "1_000",
            "NaN", "Infinity", "١", "1.-5", "..",
        ] {
            check_amount(text, not_decimal(text));
        }
    }

    #[test]
    fn floors() {
        check_floor("0", Ok(0));
        check_floor("0.00", Ok(0));
        check_floor("-0.00", Ok(0));
        check_floor("-50.00", Ok(-5000));
        check_floor("-50", Ok(-5000));
        check_floor("-1000000.00", Ok(-100_000_000));
        check_floor("50.00", Err(MoneyError::FloorPositive("50.00".into())));
        check_floor("+1", Err(MoneyError::NotDecimal("+1".into())));
        check_floor("-1000000.01", Err(MoneyError::FloorTooLow("-1000000.01".into())));
        check_floor("-5.001", Err(MoneyError::TooManyDecimals("-5.001".into())));
        check_floor("--5", Err(MoneyError::Signed("-5".into())));
        check_floor("-", Err(MoneyError::Empty));
        check_floor("-abc", Err(MoneyError::NotDecimal("-abc".into())));
    }

    #[test]
    fn posting_amounts_have_one_form() {
        assert_eq!(parse_signed_minor("-1.20"), Ok(-120));
        assert_eq!(parse_signed_minor("3.00"), Ok(300));
        assert_eq!(parse_signed_minor("0.00"), Ok(0));
        for text in ["-0.00", "3", "3.0", "+3.00", "03.00", "-", "", "1e2"] {
            assert!(parse_signed_minor(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formatting_is_canonical() {
        let check = |minor: i64, expected: &str| assert_eq!(format_minor(minor), expected);
        check(0, "0.00");
        check(6, "0.06");
        check(-6, "-0.06");
        check(1230, "12.30");
        check(-100_000_000, "-1000000.00");
        check(i64::MAX, "92233720368547758.07");
        assert_eq!(Amount::parse("12.3").unwrap().to_string(), "12.30");
        assert_eq!(Floor::parse("-0").unwrap().to_string(), "0.00");
    }

    #[test]
    fn every_formatted_amount_parses_back_to_itself() {
        for minor in (1..=AMOUNT_MINOR_MAX).step_by(99_991).chain([1, 9, 10, 99, 100, AMOUNT_MINOR_MAX]) {
            let amount = Amount::from_minor(minor).unwrap();
            assert_eq!(Amount::parse(&amount.to_string()), Ok(amount));
        }
    }
}
