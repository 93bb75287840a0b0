//! Durations as people write them in `lb.toml`: `"250ms"`, `"2s"`, `"1m"`, `"1h"`, `"1m30s"`.
//!
//! A unit is always required: a bare `30` is ambiguous (seconds? milliseconds?) and the
//! contract says durations always carry one. Also used for CLI flags such as `--ttl 10s`.

use std::{fmt, time::Duration};

/// Why a duration string was rejected. `Display` gives the message shown to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    /// A number without a unit, alone (`"30"`, or a TOML integer) or at the end (`"1m30"`).
    MissingUnit,
    /// A unit without a number before it (`"s"`, `"ms"`).
    MissingNumber(String),
    UnknownUnit {
        unit: String,
        text: String,
    },
    /// Anything else that is not `<digits><unit>` repeated: signs, decimals, spaces.
    Malformed(String),
    TooLarge(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "duration is empty; write e.g. \"2s\""),
            Self::MissingUnit => write!(f, "duration needs a unit, e.g. \"2s\""),
            Self::MissingNumber(text) => {
                write!(f, "invalid duration {text:?}: each unit needs a number before it, e.g. \"2s\"")
            }
            Self::UnknownUnit { unit, text } => {
                write!(f, "unknown duration unit {unit:?} in {text:?}; use ms, s, m or h")
            }
            Self::Malformed(text) => write!(
                f,
                "invalid duration {text:?}: write whole numbers with a unit (ms, s, m, h), e.g. \"1500ms\" or \"1m30s\""
            ),
            Self::TooLarge(text) => write!(f, "duration {text:?} is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration: one or more `<whole number><unit>` parts, summed; units `ms`, `s`,
/// `m`, `h`. Surrounding whitespace is ignored. Zero is accepted here; the keys that must
/// not be zero say so themselves.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = trimmed;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let (number, after_number) = split_prefix(rest, |c| c.is_ascii_digit());
        let (unit, after_unit) = split_prefix(after_number, |c| c.is_ascii_alphabetic());
        match (number.is_empty(), unit.is_empty()) {
            (false, true) if after_number.is_empty() => return Err(DurationError::MissingUnit),
            (true, false) => return Err(DurationError::MissingNumber(trimmed.to_string())),
            (true, true) | (false, true) => return Err(DurationError::Malformed(trimmed.to_string())),
            (false, false) => {}
        }
        let part = part_duration(number, unit, trimmed)?;
        total = total.checked_add(part).ok_or_else(|| DurationError::TooLarge(trimmed.to_string()))?;
        rest = after_unit;
    }
    Ok(total)
}

/// `number` is non-empty ASCII digits, `unit` non-empty ASCII letters.
fn part_duration(number: &str, unit: &str, text: &str) -> Result<Duration, DurationError> {
    let too_large = || DurationError::TooLarge(text.to_string());
    let n: u64 = number.parse().map_err(|_| too_large())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::UnknownUnit { unit: unit.to_string(), text: text.to_string() }),
    };
    let millis = n.checked_mul(millis_per_unit).ok_or_else(too_large)?;
    Ok(Duration::from_millis(millis))
}

/// Splits `s` after its longest prefix of characters matching `pred`.
fn split_prefix(s: &str, pred: impl Fn(char) -> bool) -> (&str, &str) {
    let end = s.find(|c: char| !pred(c)).unwrap_or(s.len());
    s.split_at(end)
}

/// Formats a duration the way it would be written in `lb.toml` (`"1m30s"`, `"250ms"`), so
/// messages quote values in the same style the user wrote them. Sub-millisecond parts, which
/// the syntax cannot express, are dropped.
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn single_units_parse() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("2s"), Ok(ms(2_000)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration(" 300s "), Ok(ms(300_000)));
    }

    #[test]
    fn compound_durations_add_up() {
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
    }

    #[test]
    fn zero_parses_so_callers_can_name_the_key_in_the_error() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_number_without_unit_is_rejected_with_an_example() {
        assert_eq!(parse_duration("30"), Err(DurationError::MissingUnit));
        assert_eq!(parse_duration("1m30"), Err(DurationError::MissingUnit));
        assert_eq!(DurationError::MissingUnit.to_string(), "duration needs a unit, e.g. \"2s\"");
    }

    #[test]
    fn malformed_durations_are_rejected() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("s"), Err(DurationError::MissingNumber("s".into())));
        assert_eq!(parse_duration("2d"), Err(DurationError::UnknownUnit { unit: "d".into(), text: "2d".into() }));
        assert_eq!(parse_duration("2S"), Err(DurationError::UnknownUnit { unit: "S".into(), text: "2S".into() }));
        for text in ["1.5s", "-1s", "1m 30s", "+2s", "2s!"] {
            assert_eq!(parse_duration(text), Err(DurationError::Malformed(text.into())), "{text}");
        }
    }

    #[test]
    fn huge_durations_are_rejected_not_wrapped() {
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::TooLarge("99999999999999999999s".into()))
        );
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::TooLarge("18446744073709551615h".into()))
        );
    }

    #[test]
    fn format_round_trips_through_parse() {
        for text in ["250ms", "2s", "1m30s", "1h", "1h0m1ms"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
