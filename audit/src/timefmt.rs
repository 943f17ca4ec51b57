//! Audit time: microseconds since the Unix epoch in the store, RFC 3339 with exactly six
//! fractional digits in every output, and the time bounds auditors type on the command line.
//!
//! One fixed textual form keeps JSON and CSV exports stable and sortable as text.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

/// Whole microseconds since the Unix epoch (truncating finer precision, towards -inf).
pub fn to_micros(t: OffsetDateTime) -> i64 {
    let nanos = t.unix_timestamp_nanos();
    nanos.div_euclid(1000) as i64
}

/// The UTC instant `micros` microseconds after the Unix epoch, `None` when out of range.
pub fn from_micros(micros: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()
}

/// `t` in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_micros(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    t.format(&fmt)
        .unwrap_or_else(|_| format!("@{}us", to_micros(t)))
}

/// Serde adapter: `OffsetDateTime` as RFC 3339 text with six fractional digits, UTC.
pub mod serde_micros {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_micros(*t))
    }

    /// Accepts any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for `Option<OffsetDateTime>`, like [`serde_micros`]; `null` when absent.
pub mod serde_micros_opt {
    use super::*;
    use serde::Serializer;

    /// Serializes as `YYYY-MM-DDTHH:MM:SS.ffffffZ` or `null`.
    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_micros(*t)),
            None => s.serialize_none(),
        }
    }
}

/// A time given on the command line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read the time {0:?}: give an RFC 3339 timestamp (2025-03-01T08:00:00Z), a UTC date \
     (2025-03-01), or an age such as 90s, 15m, 2h or 7d"
)]
pub struct BadTime(pub String);

/// Reads a time bound as auditors type it, relative to `now`:
/// an RFC 3339 timestamp, a date `YYYY-MM-DD` (midnight UTC), or an age (`90s`, `15m`, `2h`,
/// `7d`, `2w`) meaning that long before `now`.
pub fn parse_time_bound(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, BadTime> {
    let text = text.trim();
    let bad = || BadTime(text.to_owned());
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.to_offset(UtcOffset::UTC));
    }
    if let Ok(d) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_seconds: i64 = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let age = Duration::seconds(n.checked_mul(unit_seconds).ok_or_else(bad)?);
    now.checked_sub(age).ok_or_else(bad)
}

/// Like [`parse_time_bound`] for the end of a range: a plain date means the end of that day
/// (the next midnight), so `--from 2025-03-01 --to 2025-03-01` covers the whole day.
pub fn parse_end_bound(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, BadTime> {
    let t = parse_time_bound(text, now)?;
    if Date::parse(text.trim(), format_description!("[year]-[month]-[day]")).is_ok() {
        return t
            .checked_add(Duration::days(1))
            .ok_or_else(|| BadTime(text.to_owned()));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn micros_round_trip_and_truncate() {
        let t = datetime!(2025-03-01 08:00:00.123456789 UTC);
        let us = to_micros(t);
        assert_eq!(us % 1_000_000, 123_456);
        assert_eq!(
            from_micros(us).unwrap(),
            datetime!(2025-03-01 08:00:00.123456 UTC)
        );
        let before_epoch = datetime!(1969-12-31 23:59:59.9999995 UTC);
        assert_eq!(to_micros(before_epoch), -1);
    }

    #[test]
    fn formats_six_digits_in_utc() {
        let t = datetime!(2025-03-01 16:00:00.5 +08:00);
        assert_eq!(format_micros(t), "2025-03-01T08:00:00.500000Z");
    }

    #[test]
    fn parses_bounds() {
        let now = datetime!(2025-03-10 12:00:00 UTC);
        assert_eq!(
            parse_time_bound("2025-03-01", now).unwrap(),
            datetime!(2025-03-01 00:00:00 UTC)
        );
        assert_eq!(
            parse_time_bound("2025-03-01T10:00:00+08:00", now).unwrap(),
            datetime!(2025-03-01 02:00:00 UTC)
        );
        assert_eq!(
            parse_time_bound("2h", now).unwrap(),
            datetime!(2025-03-10 10:00:00 UTC)
        );
        assert_eq!(
            parse_time_bound("7d", now).unwrap(),
            datetime!(2025-03-03 12:00:00 UTC)
        );
        assert_eq!(
            parse_end_bound("2025-03-01", now).unwrap(),
            datetime!(2025-03-02 00:00:00 UTC)
        );
        assert_eq!(
            parse_end_bound("2h", now).unwrap(),
            datetime!(2025-03-10 10:00:00 UTC)
        );
        for bad in ["", "h", "yesterday", "2025-13-01", "5y", "-3h"] {
            assert!(parse_time_bound(bad, now).is_err(), "{bad}");
        }
    }
}
