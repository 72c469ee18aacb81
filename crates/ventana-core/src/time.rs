//! Instants and spans of time as plain integers.
//!
//! The core never reads a clock: every instant comes in as an argument. Both types count
//! nanoseconds in an `i64`, which covers the years 1677 to 2262 and keeps a conversation
//! state small and cheap to compare.

use std::fmt;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A UTC instant, in nanoseconds since the Unix epoch. Serialised as the number, or as its
/// eight bytes in a binary format (`fixed.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

crate::fixed::fixed_width_serde!(Timestamp, i64);

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
        if let Some(t) = Self::parse_utc(text.as_bytes()) {
            return Ok(t);
        }
        DateTime::parse_from_rfc3339(text)
            .map_err(|_| TimestampError::NotRfc3339)?
            .timestamp_nanos_opt()
            .map(Self)
            .ok_or(TimestampError::OutOfRange)
    }

    /// The form this type prints (and every instant ventana writes): UTC with a `Z`,
    /// `YYYY-MM-DDTHH:MM:SS` and 1 to 9 fractional digits, read without chrono. `None` for
    /// anything else, even when valid (an offset, a leap second, a year outside 1678–2261):
    /// chrono reads those.
    fn parse_utc(text: &[u8]) -> Option<Self> {
        let [
            y0,
            y1,
            y2,
            y3,
            b'-',
            m0,
            m1,
            b'-',
            d0,
            d1,
            b'T',
            h0,
            h1,
            b':',
            i0,
            i1,
            b':',
            s0,
            s1,
            rest @ ..,
        ] = text
        else {
            return None;
        };
        let fraction = match rest {
            [b'Z'] => &[][..],
            [b'.', digits @ .., b'Z'] if (1..=9).contains(&digits.len()) => digits,
            _ => return None,
        };
        let year = i64::from(number(&[*y0, *y1, *y2, *y3])?);
        let month = number(&[*m0, *m1])?;
        let day = number(&[*d0, *d1])?;
        let hour = i64::from(number(&[*h0, *h1])?);
        let minute = i64::from(number(&[*i0, *i1])?);
        let second = i64::from(number(&[*s0, *s1])?);
        let nanos = number(fraction)? * 10u32.pow(9 - fraction.len() as u32);
        let valid = (1678..=2261).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid {
            return None;
        }
        let seconds =
            days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
        Some(Self(seconds * NANOS_PER_SECOND + i64::from(nanos)))
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
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let of_day = seconds.rem_euclid(86_400) as u32;
        // Digits into a stack buffer, written at once: every instant an i64 holds has a
        // four-digit year. The fraction has 3, 6 or 9 digits, as few as it needs.
        let mut text = *b"0000-00-00T00:00:00.000000000Z";
        put_digits(&mut text[0..4], year as u32);
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        put_digits(&mut text[11..13], of_day / 3_600);
        put_digits(&mut text[14..16], of_day / 60 % 60);
        put_digits(&mut text[17..19], of_day % 60);
        let end = match nanos {
            0 => 19,
            n if n % 1_000_000 == 0 => {
                put_digits(&mut text[20..23], n / 1_000_000);
                23
            }
            n if n % 1_000 == 0 => {
                put_digits(&mut text[20..26], n / 1_000);
                26
            }
            n => {
                put_digits(&mut text[20..29], n);
                29
            }
        };
        text[end] = b'Z';
        f.write_str(std::str::from_utf8(&text[..=end]).expect("digits are ASCII"))
    }
}

/// `value`'s last `digits.len()` decimal digits, zero-padded, into `digits`.
fn put_digits(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The decimal number `digits` spell (at most nine of them), if they are all digits.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (H. Hinnant's algorithm:
/// years counted from March, so the leap day ends a year; 400-year eras of 146 097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
        use chrono::{SecondsFormat, Utc};
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

    /// The reading without chrono says what chrono says, for the form it reads (every
    /// fraction width, across its years) and for that form broken in every position.
    #[test]
    fn reads_what_chrono_reads() {
        let chrono = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| TimestampError::NotRfc3339)?
                .timestamp_nanos_opt()
                .map(Timestamp)
                .ok_or(TimestampError::OutOfRange)
        };
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut texts = vec![
            "2024-02-29T00:00:00Z".to_owned(),
            "2023-02-29T00:00:00Z".to_owned(),
            "2100-02-29T00:00:00Z".to_owned(),
            "2000-02-29T23:59:59.999999999Z".to_owned(),
            "2026-12-31T23:59:60Z".to_owned(),
            "2026-04-31T10:00:00Z".to_owned(),
            "2026-00-10T10:00:00Z".to_owned(),
            "2026-03-02T10:00:00.Z".to_owned(),
            "2026-03-02T10:00:00.1234567891Z".to_owned(),
            "2026-03-02t10:00:00z".to_owned(),
            "2026-03-02T10:00:00+00:00".to_owned(),
            "1677-09-21T00:12:43.145224192Z".to_owned(),
            "1677-09-21T00:12:43.145224191Z".to_owned(),
            "2262-04-11T23:47:16.854775807Z".to_owned(),
            "2262-04-11T23:47:16.854775808Z".to_owned(),
        ];
        for _ in 0..20_000 {
            let nanos = next() as i64;
            let mut text = Timestamp(nanos).to_string();
            // Every fraction width, not only the 3, 6 and 9 digits printed.
            if let Some(dot) = text.find('.') {
                let width = 1 + (next() % 9) as usize;
                text.truncate((dot + 1 + width).min(text.len() - 1));
                text.push('Z');
            }
            texts.push(text.clone());
            let mut broken = text.into_bytes();
            let at = (next() % broken.len() as u64) as usize;
            broken[at] = b"0123456789-:.TZ+x "[(next() % 18) as usize];
            texts.push(String::from_utf8(broken).unwrap());
        }
        for text in &texts {
            assert_eq!(Timestamp::parse_rfc3339(text), chrono(text), "{text}");
        }
        assert!(texts.iter().filter(|t| chrono(t).is_ok()).count() > 20_000);
        // And the printed form is read without chrono.
        let read_without = texts
            .iter()
            .filter(|t| Timestamp::parse_utc(t.as_bytes()).is_some());
        assert!(read_without.count() > 20_000);
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
