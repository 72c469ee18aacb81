//! Instants and spans of time as plain integers.
//!
//! The core never reads a clock: every instant comes in as an argument. Both types count
//! nanoseconds in an `i64`, which covers the years 1677 to 2262 and keeps a conversation
//! state small and cheap to compare.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A UTC instant, in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

/// A length of time, in nanoseconds. Never negative when it comes from a policy.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Span(i64);

/// An RFC 3339 instant that could not be read or lies outside the representable years.
/// Carries no text of the input, which may be anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampError {
    /// Not an RFC 3339 instant (`2026-03-02T10:00:00Z`, `...+01:00`).
    NotRfc3339,
    /// A valid RFC 3339 instant outside the years 1677–2262.
    OutOfRange,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotRfc3339 => "not an RFC 3339 instant (such as 2026-03-02T10:00:00Z)",
            Self::OutOfRange => "an instant outside the years 1677 to 2262",
        })
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    /// The instant `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// The instant `seconds` seconds after the Unix epoch.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds * NANOS_PER_SECOND)
    }

    /// The instant `seconds` seconds after the Unix epoch, if it lies within the
    /// representable years (1677–2262).
    pub const fn checked_from_unix_seconds(seconds: i64) -> Option<Self> {
        match seconds.checked_mul(NANOS_PER_SECOND) {
            Some(nanos) => Some(Self(nanos)),
            None => None,
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch and the nanoseconds within that second.
    pub const fn seconds_and_nanos(self) -> (i64, u32) {
        (
            self.0.div_euclid(NANOS_PER_SECOND),
            self.0.rem_euclid(NANOS_PER_SECOND) as u32,
        )
    }

    /// Reads an RFC 3339 instant with any offset; the result is UTC.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        DateTime::parse_from_rfc3339(text)
            .map_err(|_| TimestampError::NotRfc3339)?
            .timestamp_nanos_opt()
            .map(Self)
            .ok_or(TimestampError::OutOfRange)
    }

    /// `self + span`, saturating at the ends of the representable range.
    pub const fn plus(self, span: Span) -> Self {
        Self(self.0.saturating_add(span.0))
    }

    /// `self - span`, saturating at the ends of the representable range.
    pub const fn minus(self, span: Span) -> Self {
        Self(self.0.saturating_sub(span.0))
    }

    /// The span from `earlier` to `self` (negative when `earlier` is later).
    pub const fn since(self, earlier: Self) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }
}

/// RFC 3339 in UTC with a `Z`, with fractional seconds only when they are not zero.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (seconds, nanos) = self.seconds_and_nanos();
        let Some(t) = DateTime::<Utc>::from_timestamp(seconds, nanos) else {
            return write!(f, "@{}ns", self.0);
        };
        // Written field by field (every instant an i64 holds has a four-digit year): printing
        // an instant allocates nothing. The fraction has 3, 6 or 9 digits, as few as it needs.
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        match nanos {
            0 => {}
            n if n % 1_000_000 == 0 => write!(f, ".{:03}", n / 1_000_000)?,
            n if n % 1_000 == 0 => write!(f, ".{:06}", n / 1_000)?,
            n => write!(f, ".{n:09}")?,
        }
        f.write_str("Z")
    }
}

impl Span {
    /// No time at all (turns optional periods off).
    pub const ZERO: Span = Span(0);

    /// A span of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// A span of whole seconds.
    pub const fn from_seconds(seconds: i64) -> Self {
        Self(seconds * NANOS_PER_SECOND)
    }

    /// A span of whole milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis * 1_000_000)
    }

    /// A span of whole minutes.
    pub const fn from_minutes(minutes: i64) -> Self {
        Self::from_seconds(minutes * 60)
    }

    /// A span of whole hours.
    pub const fn from_hours(hours: i64) -> Self {
        Self::from_seconds(hours * 3600)
    }

    /// A span of whole days (of 24 hours: UTC has no daylight saving).
    pub const fn from_days(days: i64) -> Self {
        Self::from_hours(days * 24)
    }

    /// Its length in nanoseconds.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// True for [`Span::ZERO`].
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// The shortest exact form, with a single day written in hours: `7d`, `24h`, `90m`, `5s`,
/// `1500ms`, `0s`.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, i64); 6] = [
            ("d", 86_400 * NANOS_PER_SECOND),
            ("h", 3_600 * NANOS_PER_SECOND),
            ("m", 60 * NANOS_PER_SECOND),
            ("s", NANOS_PER_SECOND),
            ("ms", 1_000_000),
            ("us", 1_000),
        ];
        if self.0 == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            if self.0 % size == 0 && !(unit == "d" && self.0 == size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}ns", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_utc_with_fraction_only_when_not_zero() {
        let t = Timestamp::parse_rfc3339("2026-03-02T11:00:00+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-03-02T10:00:00Z");
        let t = Timestamp::parse_rfc3339("2026-03-02T10:00:01.250Z").unwrap();
        assert_eq!(t.to_string(), "2026-03-02T10:00:01.250Z");
        let t = Timestamp::parse_rfc3339("1969-12-31T23:59:59.5Z").unwrap();
        assert_eq!(t.to_string(), "1969-12-31T23:59:59.500Z");
    }

    /// The printing written field by field says what chrono's RFC 3339 printing (UTC, `Z`,
    /// 0, 3, 6 or 9 fractional digits) says, across the whole range and every fraction width.
    #[test]
    fn prints_what_chrono_prints() {
        use chrono::SecondsFormat;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let fractions = [
            0,
            1,
            999,
            1_000,
            120_000,
            1_000_000,
            250_000_000,
            999_999_999,
        ];
        let mut instants = vec![i64::MIN, i64::MAX, 0, -1, 1];
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let seconds = (state as i64).rem_euclid(i64::MAX / NANOS_PER_SECOND * 2)
                - i64::MAX / NANOS_PER_SECOND;
            let fraction = fractions[(state >> 60) as usize % fractions.len()];
            instants.push(
                seconds
                    .saturating_mul(NANOS_PER_SECOND)
                    .saturating_add(fraction),
            );
        }
        for nanos in instants {
            let t = Timestamp(nanos);
            let (seconds, fraction) = t.seconds_and_nanos();
            let chrono = DateTime::<Utc>::from_timestamp(seconds, fraction)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true);
            assert_eq!(t.to_string(), chrono, "{nanos}");
        }
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        assert!(Timestamp::parse_rfc3339("2026-03-02 10:00").is_err());
        assert!(Timestamp::parse_rfc3339("").is_err());
    }

    #[test]
    fn spans_print_in_their_largest_exact_unit() {
        assert_eq!(Span::from_days(7).to_string(), "7d");
        assert_eq!(Span::from_hours(24).to_string(), "24h");
        assert_eq!(Span::from_hours(48).to_string(), "2d");
        assert_eq!(Span::from_minutes(90).to_string(), "90m");
        assert_eq!(Span::ZERO.to_string(), "0s");
    }
}
