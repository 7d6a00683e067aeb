//! Durations as people write them in config: `30m`, `1800s`, `250ms`, `1h 30m`.

use crate::clock::Micros;

/// Units in the order [`format_duration`] uses them, with their length in µs.
const UNITS: [(&str, Micros); 6] = [
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
    ("us", 1),
];

/// Parses a duration written as one or more `<number><unit>` parts (`30m`,
/// `1800s`, `250ms`, `1h 30m`; units `d`, `h`, `m`, `s`, `ms`, `us`) into
/// microseconds. Deliberately strict — `30 minutes` is refused with the fix — so a
/// config reads the same to everyone. The error says what was wrong and how to
/// write it.
pub fn parse_duration(text: &str) -> Result<Micros, String> {
    let fail = || {
        format!(
            "`{}` is not a duration; write {}",
            super::error::cut(text, super::error::MAX_ECHO),
            suggestion(text.trim())
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(fail());
    }
    let mut total: Micros = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.len()
            - tail
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, tail) = tail.split_at(unit_len);
        let number: Micros = number.parse().map_err(|_| fail())?;
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, us)| *us)
            .ok_or_else(fail)?;
        total = number
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| {
                format!(
                    "`{}` is too long a duration",
                    super::error::cut(text, super::error::MAX_ECHO)
                )
            })?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// Formats microseconds the way [`parse_duration`] reads them (`30m`, `1h 30m`).
pub fn format_duration(us: Micros) -> String {
    DisplayDuration(us).to_string()
}

/// Microseconds displayed as [`format_duration`] writes them, for writing
/// straight into a buffer (the gRPC answer names every limit it reports with
/// one; a `String` per call would cost allocations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayDuration(pub Micros);

impl std::fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        let mut first = true;
        for (name, scale) in UNITS {
            if rest >= scale {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}{name}", rest / scale)?;
                rest %= scale;
                first = false;
            }
        }
        Ok(())
    }
}

/// A likely spelling for a duration someone wrote out in words ("30 minutes").
fn suggestion(text: &str) -> String {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = text[digits.len()..].trim().to_ascii_lowercase();
    let short = if unit.starts_with("min") {
        "m"
    } else if unit.starts_with("ms") || unit.starts_with("milli") {
        "ms"
    } else if unit.starts_with('s') {
        "s"
    } else if unit.starts_with('h') {
        "h"
    } else if unit.starts_with('d') {
        "d"
    } else {
        ""
    };
    if digits.is_empty() || short.is_empty() {
        "a number and a unit, e.g. `30m`, `1800s`, `250ms` or `1h 30m`".to_owned()
    } else {
        format!("`{digits}{short}`")
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::minutes("30m", 1_800_000_000)]
    #[case::seconds("1800s", 1_800_000_000)]
    #[case::millis("250ms", 250_000)]
    #[case::combined("1h 30m", 5_400_000_000)]
    #[case::padded(" 2s ", 2_000_000)]
    fn parses(#[case] text: &str, #[case] expected: Micros) {
        assert_eq!(parse_duration(text), Ok(expected));
    }

    #[rstest]
    #[case::words("30 minutes", "`30m`")]
    #[case::bare_number("30", "a number and a unit")]
    #[case::garbage("soon", "a number and a unit")]
    #[case::seconds_word("10 secs", "`10s`")]
    fn rejects_with_a_fix(#[case] text: &str, #[case] hint: &str) {
        let err = parse_duration(text).unwrap_err();
        assert!(err.contains(hint), "{err}");
        assert!(
            err.contains(&format!("`{text}` is not a duration")),
            "{err}"
        );
    }

    #[rstest]
    #[case::nanoseconds("5ns")]
    #[case::empty("")]
    #[case::unit_only("ms")]
    #[case::negative("-5s")]
    #[case::fraction("1.5s")]
    fn rejects(#[case] text: &str) {
        assert!(parse_duration(text).is_err());
    }

    #[test]
    fn rejects_overflow() {
        assert!(
            parse_duration("99999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_duration(1_800_000_000), "30m");
        assert_eq!(
            parse_duration(&format_duration(5_400_250_000)),
            Ok(5_400_250_000)
        );
    }
}
