//! Durations as people write them on a command line: `500ms`, `15s`, `1m30s`, `1h 5m`.
//!
//! Each part is a whole number and a unit; parts add up. The units are
//! humantime's (which usher used before): ns, us/µs, ms, s, m, h, d, w,
//! M (30.44 days), y (365.25 days), with their long spellings. Written out
//! here because the whole parser is smaller than the crate's share of the
//! binary.

use alloc::format;
use alloc::string::String;

use core::time::Duration;

/// What is wrong with a duration.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Error {
    /// Too long to count in nanoseconds.
    Overflow,
    /// Something else, said in words.
    Bad(String),
}

/// Nanoseconds in one of `unit`.
fn unit_nanos(unit: &str) -> Option<u64> {
    const S: u64 = 1_000_000_000;
    Some(match unit {
        "nsec" | "ns" => 1,
        "usec" | "us" | "µs" => 1_000,
        "msec" | "ms" => 1_000_000,
        "seconds" | "second" | "secs" | "sec" | "s" => S,
        "minutes" | "minute" | "mins" | "min" | "m" => 60 * S,
        "hours" | "hour" | "hrs" | "hr" | "h" => 3_600 * S,
        "days" | "day" | "d" => 86_400 * S,
        "weeks" | "week" | "w" => 7 * 86_400 * S,
        "months" | "month" | "M" => 2_630_016 * S,
        "years" | "year" | "y" => 31_557_600 * S,
        _ => return None,
    })
}

/// Parses `1m30s`, `1m 30s`, `500ms`; a lone `0` is zero.
pub fn parse(text: &str) -> Result<Duration, Error> {
    let text = text.trim();
    match text {
        "0" => return Ok(Duration::ZERO),
        "" => return Err(Error::Bad("empty".into())),
        _ => {}
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(Error::Bad(format!("expected a number at {rest:?}")));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| Error::Overflow)?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.len() - rest.trim_start_matches(char::is_alphabetic).len();
        let unit = &rest[..unit_len];
        if rest.starts_with('.') {
            return Err(Error::Bad("no fractions: write 1500ms for 1.5s".into()));
        }
        if unit.is_empty() {
            return Err(Error::Bad(format!("{number} has no unit")));
        }
        let nanos = unit_nanos(unit).ok_or_else(|| Error::Bad(format!("unknown unit {unit:?}")))?;
        let part = number.checked_mul(nanos).ok_or(Error::Overflow)?;
        total = total.checked_add(part).ok_or(Error::Overflow)?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("500ms", ms(500)),
            ("15s", ms(15_000)),
            ("1m30s", ms(90_000)),
            ("1m 30s", ms(90_000)),
            ("2 min", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("365d", ms(365 * 86_400_000)),
            ("1ns", Duration::from_nanos(1)),
            ("3µs", Duration::from_micros(3)),
            ("1y", ms(31_557_600_000)),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in [
            "", "5", "s", "1.5s", "-1s", "5 x", "1m30", "soon", "1s!", "+1s",
        ] {
            assert!(
                matches!(parse(text), Err(Error::Bad(_))),
                "{text}: {:?}",
                parse(text)
            );
        }
        for text in [
            "99999999999999999999s",
            "18446744073709551615s",
            "600y",
            "500000000000y",
        ] {
            assert_eq!(parse(text), Err(Error::Overflow), "{text}");
        }
    }
}
