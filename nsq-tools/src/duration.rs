//! Go's duration syntax (`time.ParseDuration`), which nsq's flags and go-nsq's options use:
//! `300ms`, `1.5h`, `2h45m`, `-1s`; units `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`; a bare
//! `0` is the only number allowed without a unit.

use std::time::Duration;

/// Why a duration did not parse.
///
/// ```
/// let err = nsq_tools::duration::parse("30").unwrap_err();
/// assert_eq!(err.to_string(), "invalid duration \"30\": missing unit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why}")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// A parsed Go duration, which may be negative (go-nsq gives `-1` meanings to some).
///
/// ```
/// use std::time::Duration;
/// use nsq_tools::duration::{parse_signed, Signed};
/// assert_eq!(parse_signed("-1ms")?, Signed { negative: true, magnitude: Duration::from_millis(1) });
/// # Ok::<(), nsq_tools::duration::DurationError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// Whether it had a leading `-` (and is not zero).
    pub negative: bool,
    /// Its size.
    pub magnitude: Duration,
}

/// Parses a non-negative Go duration.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(nsq_tools::duration::parse("1m30s")?, Duration::from_secs(90));
/// assert_eq!(nsq_tools::duration::parse("250ms")?, Duration::from_millis(250));
/// assert!(nsq_tools::duration::parse("-1s").is_err());
/// # Ok::<(), nsq_tools::duration::DurationError>(())
/// ```
///
/// # Errors
///
/// [`DurationError`] when it is not Go's syntax, is negative or overflows.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let signed = parse_signed(input)?;
    if signed.negative {
        return Err(error(input, "must not be negative"));
    }
    Ok(signed.magnitude)
}

/// Parses a Go duration that may be negative.
///
/// ```
/// let d = nsq_tools::duration::parse_signed("1.5s")?;
/// assert!(!d.negative);
/// assert_eq!(d.magnitude.as_millis(), 1500);
/// # Ok::<(), nsq_tools::duration::DurationError>(())
/// ```
///
/// # Errors
///
/// [`DurationError`] when it is not Go's syntax or overflows.
pub fn parse_signed(input: &str) -> Result<Signed, DurationError> {
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Signed {
            negative: false,
            magnitude: Duration::ZERO,
        });
    }
    if rest.is_empty() {
        return Err(error(input, "empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(error(input, "expected a number"));
        }
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let nanos_per_unit: u128 = match unit {
            "" => return Err(error(input, "missing unit")),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(error(input, "unknown unit")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| error(input, "overflow"))?
        };
        let mut part = whole
            .checked_mul(nanos_per_unit)
            .ok_or_else(|| error(input, "overflow"))?;
        // The fraction, digit by digit, as Go does (digits beyond a nanosecond are dropped).
        let mut scale = nanos_per_unit;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            part += u128::from(digit - b'0') * scale;
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| error(input, "overflow"))?;
    }
    // Go's durations are an int64 of nanoseconds.
    if total > i64::MAX as u128 {
        return Err(error(input, "overflow"));
    }
    let magnitude = Duration::from_nanos(u64::try_from(total).unwrap_or(u64::MAX));
    Ok(Signed {
        negative: negative && !magnitude.is_zero(),
        magnitude,
    })
}

fn error(input: &str, why: &'static str) -> DurationError {
    DurationError {
        input: input.to_owned(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_examples_parse() {
        let cases = [
            ("0", 0),
            ("5s", 5_000_000_000),
            ("30s", 30_000_000_000),
            ("1478s", 1_478_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("2h45m", 9_900_000_000_000),
            ("1m30.5s", 90_500_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("100ms", 100_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            ("1.0000000019s", 1_000_000_001),
        ];
        for (input, nanos) in cases {
            let d = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(d.as_nanos(), nanos, "{input}");
        }
    }

    #[test]
    fn what_go_refuses_is_refused() {
        for input in [
            "",
            "30",
            "s",
            "1x",
            "1..5s",
            ".s",
            "-",
            "1s2",
            "9999999999h",
        ] {
            assert!(parse_signed(input).is_err(), "{input:?} parsed");
        }
    }

    #[test]
    fn signs() {
        assert!(parse_signed("-1s").unwrap().negative);
        assert!(!parse_signed("-0s").unwrap().negative);
        assert!(!parse_signed("+3m").unwrap().negative);
        assert!(parse("-2ms").is_err());
    }
}
