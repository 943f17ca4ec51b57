//! The order-preserving mode's plaintexts: integers, fixed-scale decimals, dates and timestamps,
//! each encoded as an `i64` whose order is the value's order.
//!
//! - integer: itself;
//! - decimal with a fixed scale `s` (the column's, e.g. `numeric(12,2)`): the unscaled value
//!   `v · 10^s`, so `123.45` at scale 2 is `12345`;
//! - date: days since 1970-01-01 (proleptic Gregorian);
//! - timestamp: microseconds since 1970-01-01 00:00:00 UTC (both databases' finest resolution);
//!   text with an explicit offset (`+08:00`, `Z`) is converted to UTC, text without one is taken
//!   as it stands (a `timestamp without time zone`).
//!
//! The text forms are those PostgreSQL and MySQL print, so the proxy can take a value off the
//! text protocol, encrypt it, and print the decrypted value back the same way.

use std::fmt::Write as _;

/// Maps `i64` to `u64` preserving order (flips the sign bit).
pub fn i64_to_ordered(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Inverse of [`i64_to_ordered`].
pub fn ordered_to_i64(u: u64) -> i64 {
    (u ^ (1 << 63)) as i64
}

/// What kind of value an order-preserving column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderedKind {
    /// A 64-bit signed integer.
    Integer,
    /// A decimal with this many digits after the point (the column's scale, at most 18).
    Decimal {
        /// Digits after the decimal point.
        scale: u8,
    },
    /// A calendar date.
    Date,
    /// A date and time with microsecond resolution.
    Timestamp,
}

/// A text value that does not fit the column's kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} for an order-preserving column: {reason}")]
pub struct ValueError {
    value: String,
    kind: &'static str,
    reason: &'static str,
}

impl OrderedKind {
    fn name(self) -> &'static str {
        match self {
            OrderedKind::Integer => "integer",
            OrderedKind::Decimal { .. } => "decimal",
            OrderedKind::Date => "date",
            OrderedKind::Timestamp => "timestamp",
        }
    }

    fn error(self, value: &str, reason: &'static str) -> ValueError {
        ValueError {
            value: value.chars().take(64).collect(),
            kind: self.name(),
            reason,
        }
    }

    /// Parses the text form into the order-preserving `i64`.
    pub fn parse(self, text: &str) -> Result<i64, ValueError> {
        let t = text.trim();
        match self {
            OrderedKind::Integer => t
                .parse()
                .map_err(|_| self.error(text, "not a 64-bit integer")),
            OrderedKind::Decimal { scale } => parse_decimal(t, scale).ok_or_else(|| {
                self.error(
                    text,
                    "not a decimal that fits 64 bits at the column's scale",
                )
            }),
            OrderedKind::Date => parse_date(t)
                .filter(|(_, rest)| rest.is_empty())
                .map(|(d, _)| d)
                .ok_or_else(|| self.error(text, "expected YYYY-MM-DD")),
            OrderedKind::Timestamp => parse_timestamp(t)
                .ok_or_else(|| self.error(text, "expected YYYY-MM-DD HH:MM:SS[.ffffff][±HH:MM]")),
        }
    }

    /// Formats an order-preserving `i64` back to text.
    pub fn format(self, v: i64) -> String {
        match self {
            OrderedKind::Integer => v.to_string(),
            OrderedKind::Decimal { scale } => format_decimal(v, scale),
            OrderedKind::Date => format_date(v),
            OrderedKind::Timestamp => format_timestamp(v),
        }
    }
}

fn parse_decimal(t: &str, scale: u8) -> Option<i64> {
    if scale > 18 {
        return None;
    }
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Extra fractional digits are accepted only if they are zeros: rounding would make the
    // stored value differ from what the application wrote.
    let (kept, extra) = frac.split_at(frac.len().min(scale as usize));
    if !extra.bytes().all(|b| b == b'0') {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(kept.bytes()) {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    for _ in kept.len()..scale as usize {
        v = v.checked_mul(10)?;
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

fn format_decimal(v: i64, scale: u8) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the well-known era/day-of-era method).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

fn expect(s: &str, c: char) -> Option<&str> {
    s.strip_prefix(c)
}

/// `YYYY-MM-DD`, returning the days and what follows.
fn parse_date(s: &str) -> Option<(i64, &str)> {
    let (year, s) = digits(s, 4)?;
    let (month, s) = digits(expect(s, '-')?, 2)?;
    let (day, s) = digits(expect(s, '-')?, 2)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((days_from_civil(year, month, day), s))
}

fn parse_timestamp(s: &str) -> Option<i64> {
    let (days, s) = parse_date(s)?;
    let s = s.strip_prefix(' ').or_else(|| s.strip_prefix('T'))?;
    let (h, s) = digits(s, 2)?;
    let (mi, s) = digits(expect(s, ':')?, 2)?;
    let (sec, mut s) = digits(expect(s, ':')?, 2)?;
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut micros = 0i64;
    if let Some(rest) = s.strip_prefix('.') {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 6 {
            return None;
        }
        micros = rest[..n].parse::<i64>().ok()? * 10i64.pow(6 - n as u32);
        s = &rest[n..];
    }
    let offset_secs = match s.as_bytes().first() {
        None => 0,
        Some(b'Z') if s.len() == 1 => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let (oh, rest) = digits(&s[1..], 2)?;
            let (om, rest) = match rest.strip_prefix(':') {
                Some(r) => digits(r, 2)?,
                None if rest.is_empty() => (0, rest),
                None => digits(rest, 2)?,
            };
            if !rest.is_empty() || oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let mut out = format_date(days);
    let _ = write!(
        out,
        " {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_mapping_preserves_order() {
        let values = [i64::MIN, -2, -1, 0, 1, 2, i64::MAX];
        for w in values.windows(2) {
            assert!(i64_to_ordered(w[0]) < i64_to_ordered(w[1]));
        }
        for v in values {
            assert_eq!(ordered_to_i64(i64_to_ordered(v)), v);
        }
    }

    #[test]
    fn dates() {
        let k = OrderedKind::Date;
        assert_eq!(k.parse("1970-01-01").unwrap(), 0);
        assert_eq!(k.parse("2000-03-01").unwrap(), 11_017);
        assert_eq!(k.parse("1969-12-31").unwrap(), -1);
        assert_eq!(k.format(k.parse("2024-02-29").unwrap()), "2024-02-29");
        assert!(k.parse("2023-02-29").is_err());
        assert!(k.parse("2024-13-01").is_err());
        assert!(k.parse("2024-1-01").is_err());
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn timestamps() {
        let k = OrderedKind::Timestamp;
        assert_eq!(k.parse("1970-01-01 00:00:01").unwrap(), 1_000_000);
        assert_eq!(k.parse("1970-01-01T00:00:00.5").unwrap(), 500_000);
        assert_eq!(k.parse("1970-01-01 08:00:00+08:00").unwrap(), 0);
        assert_eq!(k.parse("1970-01-01 00:00:00Z").unwrap(), 0);
        assert_eq!(k.parse("1969-12-31 23:59:59.999999").unwrap(), -1);
        let text = "2024-06-30 12:34:56.123";
        assert_eq!(k.format(k.parse(text).unwrap()), text);
        assert_eq!(
            k.format(k.parse("2024-06-30 12:34:56").unwrap()),
            "2024-06-30 12:34:56"
        );
        assert!(k.parse("2024-06-30 24:00:00").is_err());
        assert!(k.parse("2024-06-30 12:00:00.1234567").is_err());
        assert!(k.parse("2024-06-30").is_err());
    }

    #[test]
    fn decimals() {
        let k = OrderedKind::Decimal { scale: 2 };
        assert_eq!(k.parse("123.45").unwrap(), 12_345);
        assert_eq!(k.parse("-0.5").unwrap(), -50);
        assert_eq!(k.parse("7").unwrap(), 700);
        assert_eq!(k.parse("1.230").unwrap(), 123);
        assert!(k.parse("1.234").is_err(), "no silent rounding");
        assert!(k.parse("1e5").is_err());
        assert!(k.parse("99999999999999999999").is_err());
        assert_eq!(k.format(-50), "-0.50");
        assert_eq!(k.format(12_345), "123.45");
        assert_eq!(OrderedKind::Decimal { scale: 0 }.format(-3), "-3");
        let big = OrderedKind::Decimal { scale: 4 };
        assert_eq!(big.parse(&big.format(i64::MIN)).unwrap(), i64::MIN);
        assert_eq!(big.parse(&big.format(i64::MAX)).unwrap(), i64::MAX);
    }

    #[test]
    fn integers() {
        let k = OrderedKind::Integer;
        assert_eq!(k.parse(" -42 ").unwrap(), -42);
        assert!(k.parse("4.2").is_err());
        assert_eq!(k.format(i64::MIN), i64::MIN.to_string());
    }
}
