//! The logical type of an encrypted column — the type the application reads and writes — and
//! the codecs between its values and the plaintext bytes that are sealed.
//!
//! The database stores ciphertext (`bytea` or base64 text), but the application still sees a
//! `varchar(18)`, a `numeric(12,2)` or a `date`. [`LogicalType`] is that type: parsed from a
//! policy file or from the catalog ([`LogicalType::parse`] accepts PostgreSQL's `format_type`
//! spellings, common aliases and MySQL's spellings), and described back to clients in
//! PostgreSQL's terms ([`LogicalType::sql_name`], [`LogicalType::pg_oid`], …).
//!
//! # Plaintexts
//!
//! What gets sealed depends on the mode:
//!
//! - order-preserving: the 8-byte big-endian `i64` of [`OrderedKind`] (integer; decimal
//!   unscaled at the column's scale; days or microseconds since 1970), so that ciphertext order
//!   is value order;
//! - every other mode: the value's *canonical text* as UTF-8, so that equal values always give
//!   equal plaintexts — deterministic encryption (equality, joins, `UNIQUE` on ciphertext)
//!   relies on it. `'007'`, `'+7'` and `' 7 '` are all the integer `7`; `1.5` in a
//!   `numeric(12,2)` is `1.50`; a `char(4)` value has its padding stripped.
//!
//! Canonicalisation follows PostgreSQL's input rules for the type: `varchar(n)` and `char(n)`
//! refuse longer values unless the excess is spaces (which are cut), integers are range-checked,
//! `numeric(p,s)` rounds half away from zero to `s` digits and refuses more than `p - s`
//! integer digits, dates are `YYYY-MM-DD` between 0001-01-01 and 9999-12-31 and timestamps
//! `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `T` separator is accepted; a time zone offset is ignored,
//! as PostgreSQL ignores it for `timestamp without time zone`).
//!
//! # Wire formats
//!
//! Values reach the proxy in PostgreSQL's text format (simple queries, text parameters) or
//! binary format (parameters and results with format code 1); the `plaintext_*` methods convert
//! both ways, and print values exactly as PostgreSQL would for the logical type.
//!
//! No decoder panics, whatever the bytes: everything that does not fit is a [`ValueError`]
//! naming the type and (shortened) the offending value.

use std::fmt::Write as _;

use warden_crypto::Mode;
use warden_crypto::ope::value::OrderedKind;

/// The largest numeric precision an encrypted column supports: order-preserving values are
/// 64-bit integers, and every mode shares one set of types.
pub const MAX_NUMERIC_PRECISION: u8 = 18;

/// PostgreSQL's largest `varchar(n)` / `char(n)` length.
const MAX_LENGTH: u32 = 10_485_760;

/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch for dates and timestamps).
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Days since 1970-01-01 of 0001-01-01, the first date an encrypted column holds.
const MIN_DAY: i64 = -719_162;
/// Days since 1970-01-01 of 9999-12-31, the last date an encrypted column holds.
const MAX_DAY: i64 = 2_932_896;

/// PostgreSQL's numeric sign words.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;

const SUPPORTED: &str = "text, varchar(n), char(n), smallint, integer, bigint, numeric(p,s) with p at most 18, date, timestamp";

/// The type the application sees for an encrypted column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicalType {
    /// `text`.
    Text,
    /// `character varying(n)`, or unbounded.
    Varchar(Option<u32>),
    /// `character(n)` (blank-padded).
    Char(u32),
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `numeric(precision, scale)`, precision at most [`MAX_NUMERIC_PRECISION`].
    Numeric { precision: u8, scale: u8 },
    /// `date`.
    Date,
    /// `timestamp without time zone`, microsecond resolution.
    Timestamp,
}

/// What values of a logical type are, regardless of length limits or precision: columns whose
/// ciphertexts must compare (one key domain) need the same class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CanonicalClass {
    /// Character strings.
    Text,
    /// Integers of any width.
    Integer,
    /// Fixed-point decimals with this scale.
    Decimal { scale: u8 },
    /// Dates.
    Date,
    /// Timestamps without time zone.
    Timestamp,
}

/// A value that does not fit a logical type (or bytes that are not a value of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValueError {
    message: String,
}

impl ValueError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ValueError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A value for messages: quoted, escaped, at most 64 characters.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::from("\"");
    let mut chars = text.chars();
    for c in chars.by_ref().take(64) {
        let _ = write!(out, "{}", c.escape_debug());
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out.push('"');
    out
}

fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// A decoded value: text for the character types, the order-preserving `i64` of
/// [`OrderedKind`] for the others.
enum Canon {
    Text(String),
    Ordered(i64),
}

/// A decimal number as significant digits: the value is `0.d₁d₂…dₙ × 10^int_len`, i.e. the
/// first `int_len` digits are before the point. No leading or trailing zero digits; zero has
/// no digits.
struct Digits {
    negative: bool,
    digits: Vec<u8>,
    int_len: i64,
}

impl Digits {
    fn new(negative: bool, mut digits: Vec<u8>, mut int_len: i64) -> Self {
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        int_len -= leading as i64;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        Digits {
            negative,
            digits,
            int_len,
        }
    }

    /// Parses PostgreSQL's numeric input: `[±]digits[.digits][e[±]digits]`, blanks around.
    fn parse(text: &str) -> Option<Self> {
        let s = text.trim_matches(is_space).as_bytes();
        let (negative, s) = match s.first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let int_end = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let (int, rest) = s.split_at(int_end);
        let (frac, rest) = match rest.strip_prefix(b".") {
            Some(r) => {
                let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
                r.split_at(n)
            }
            None => (&rest[..0], rest),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let exponent = match rest {
            [] => 0,
            [b'e' | b'E', e @ ..] => {
                let (neg, e) = match e.first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                // Saturates: beyond a million the value overflows or rounds to zero anyway.
                let mag = e.iter().fold(0i64, |acc, &b| {
                    (acc * 10 + i64::from(b - b'0')).min(1_000_000)
                });
                if neg { -mag } else { mag }
            }
            _ => return None,
        };
        let digits = int.iter().chain(frac).map(|b| b - b'0').collect();
        Some(Self::new(negative, digits, int.len() as i64 + exponent))
    }

    /// Rounds half away from zero to `scale` fraction digits and returns the unscaled value,
    /// or `None` when it needs more than `precision` digits.
    fn round(&self, precision: u8, scale: u8) -> Option<i64> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let cut = self.int_len + i64::from(scale);
        if cut > i64::from(precision) {
            return None;
        }
        if cut < 0 {
            return Some(0);
        }
        let cut = cut as usize;
        let mut v: u64 = 0;
        for i in 0..cut {
            v = v * 10 + u64::from(self.digits.get(i).copied().unwrap_or(0));
        }
        if self.digits.get(cut).is_some_and(|&d| d >= 5) {
            v += 1;
        }
        if v >= 10u64.checked_pow(u32::from(precision))? {
            return None;
        }
        let v = v as i64;
        Some(if self.negative { -v } else { v })
    }
}

impl LogicalType {
    /// Parses a type name: PostgreSQL's `format_type` spellings (`character varying(18)`,
    /// `numeric(12,2)`, `timestamp without time zone`), common aliases (`varchar`, `int4`,
    /// `decimal`) and MySQL's (`int(11)`, `datetime(6)`, `longtext`). Case and blanks do not
    /// matter.
    pub fn parse(s: &str) -> Result<Self, String> {
        let shown_name = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let collapsed = shown_name.to_lowercase();
        // Drop blanks next to parentheses and commas: "numeric ( 12 , 2 )" → "numeric(12,2)".
        let chars: Vec<char> = collapsed.chars().collect();
        let mut norm = String::with_capacity(collapsed.len());
        for (i, &c) in chars.iter().enumerate() {
            let near_punct = |j: Option<usize>| {
                j.and_then(|j| chars.get(j))
                    .is_some_and(|c| matches!(c, '(' | ')' | ','))
            };
            if c == ' ' && (near_punct(i.checked_sub(1)) || near_punct(Some(i + 1))) {
                continue;
            }
            norm.push(c);
        }
        let unsupported = || {
            format!(
                "type {shown_name:?} is not supported for encrypted columns; supported types are {SUPPORTED}"
            )
        };
        let (name, args) = match norm.find('(') {
            Some(open) => {
                let close = norm[open..]
                    .find(')')
                    .map(|c| c + open)
                    .ok_or_else(unsupported)?;
                let suffix = &norm[close + 1..];
                if suffix.contains(['(', ')']) {
                    return Err(unsupported());
                }
                let mut args = Vec::new();
                for a in norm[open + 1..close].split(',') {
                    if a.is_empty() || a.len() > 9 || !a.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(format!(
                            "type {shown_name:?}: invalid type modifier {a:?} (expected a non-negative number)"
                        ));
                    }
                    args.push(a.parse::<u32>().map_err(|_| unsupported())?);
                }
                let name = norm[..open].trim();
                let suffix = suffix.trim();
                let full = if suffix.is_empty() {
                    name.to_string()
                } else {
                    format!("{name} {suffix}")
                };
                (full, Some(args))
            }
            None => (norm, None),
        };
        let length = |n: u32| {
            if (1..=MAX_LENGTH).contains(&n) {
                Ok(n)
            } else {
                Err(format!(
                    "type {shown_name:?}: the length must be between 1 and {MAX_LENGTH}"
                ))
            }
        };
        let no_args = |t: LogicalType| match &args {
            None => Ok(t),
            Some(_) => Err(format!(
                "type {shown_name:?}: {} takes no type modifier",
                t.sql_name()
            )),
        };
        // MySQL's display width (`int(11)`) says nothing about the values.
        let display_width = |t: LogicalType| match args.as_deref() {
            None | Some([_]) => Ok(t),
            Some(_) => Err(unsupported()),
        };
        let timestamp_precision = || match args.as_deref() {
            None => Ok(LogicalType::Timestamp),
            Some([p]) if *p <= 6 => Ok(LogicalType::Timestamp),
            Some(_) => Err(format!(
                "type {shown_name:?}: the fractional seconds precision must be between 0 and 6"
            )),
        };
        match name.as_str() {
            "text" | "tinytext" | "mediumtext" | "longtext" => no_args(LogicalType::Text),
            "varchar" | "character varying" => match args.as_deref() {
                None => Ok(LogicalType::Varchar(None)),
                Some([n]) => Ok(LogicalType::Varchar(Some(length(*n)?))),
                Some(_) => Err(unsupported()),
            },
            "char" | "character" | "bpchar" => match args.as_deref() {
                None if name == "bpchar" => Err(format!(
                    "type {shown_name:?}: an encrypted bpchar column needs a length, e.g. char(4)"
                )),
                None => Ok(LogicalType::Char(1)),
                Some([n]) => Ok(LogicalType::Char(length(*n)?)),
                Some(_) => Err(unsupported()),
            },
            "smallint" | "int2" => display_width(LogicalType::Int2),
            "integer" | "int" | "int4" => display_width(LogicalType::Int4),
            "bigint" | "int8" => display_width(LogicalType::Int8),
            "numeric" | "decimal" | "dec" => {
                let (precision, scale) = match args.as_deref() {
                    Some([p]) => (*p, 0),
                    Some([p, s]) => (*p, *s),
                    None => {
                        return Err(format!(
                            "type {shown_name:?}: an encrypted numeric column needs a precision and scale, e.g. numeric(12,2) (precision at most {MAX_NUMERIC_PRECISION})"
                        ));
                    }
                    Some(_) => return Err(unsupported()),
                };
                if precision == 0 || precision > u32::from(MAX_NUMERIC_PRECISION) {
                    return Err(format!(
                        "type {shown_name:?}: the precision of an encrypted numeric must be between 1 and {MAX_NUMERIC_PRECISION} (order-preserving values are 64-bit integers)"
                    ));
                }
                if scale > precision {
                    return Err(format!(
                        "type {shown_name:?}: the scale {scale} is larger than the precision {precision}"
                    ));
                }
                Ok(LogicalType::Numeric {
                    precision: precision as u8,
                    scale: scale as u8,
                })
            }
            "date" => no_args(LogicalType::Date),
            "timestamp" | "timestamp without time zone" | "datetime" => timestamp_precision(),
            "timestamptz" | "timestamp with time zone" => Err(
                "timestamp with time zone is not supported for encrypted columns; use timestamp"
                    .to_string(),
            ),
            _ => Err(unsupported()),
        }
    }

    /// The name as PostgreSQL's `format_type` prints it.
    pub fn sql_name(&self) -> String {
        match self {
            LogicalType::Text => "text".into(),
            LogicalType::Varchar(Some(n)) => format!("character varying({n})"),
            LogicalType::Varchar(None) => "character varying".into(),
            LogicalType::Char(n) => format!("character({n})"),
            LogicalType::Int2 => "smallint".into(),
            LogicalType::Int4 => "integer".into(),
            LogicalType::Int8 => "bigint".into(),
            LogicalType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            LogicalType::Date => "date".into(),
            LogicalType::Timestamp => "timestamp without time zone".into(),
        }
    }

    /// The type's name without modifiers, for messages ("is not a valid bigint").
    fn base_name(&self) -> &'static str {
        match self {
            LogicalType::Text => "text",
            LogicalType::Varchar(_) => "character varying",
            LogicalType::Char(_) => "character",
            LogicalType::Int2 => "smallint",
            LogicalType::Int4 => "integer",
            LogicalType::Int8 => "bigint",
            LogicalType::Numeric { .. } => "numeric",
            LogicalType::Date => "date",
            LogicalType::Timestamp => "timestamp",
        }
    }

    /// PostgreSQL's type OID.
    pub fn pg_oid(&self) -> u32 {
        match self {
            LogicalType::Text => 25,
            LogicalType::Varchar(_) => 1043,
            LogicalType::Char(_) => 1042,
            LogicalType::Int2 => 21,
            LogicalType::Int4 => 23,
            LogicalType::Int8 => 20,
            LogicalType::Numeric { .. } => 1700,
            LogicalType::Date => 1082,
            LogicalType::Timestamp => 1114,
        }
    }

    /// PostgreSQL's `typlen` (-1: variable length).
    pub fn pg_typlen(&self) -> i16 {
        match self {
            LogicalType::Text
            | LogicalType::Varchar(_)
            | LogicalType::Char(_)
            | LogicalType::Numeric { .. } => -1,
            LogicalType::Int2 => 2,
            LogicalType::Int4 | LogicalType::Date => 4,
            LogicalType::Int8 | LogicalType::Timestamp => 8,
        }
    }

    /// PostgreSQL's type modifier (`atttypmod`), -1 when there is none.
    pub fn pg_typmod(&self) -> i32 {
        match self {
            LogicalType::Varchar(Some(n)) | LogicalType::Char(n) => {
                i32::try_from(*n).map_or(-1, |n| n.saturating_add(4))
            }
            LogicalType::Numeric { precision, scale } => {
                ((i32::from(*precision) << 16) | i32::from(*scale)) + 4
            }
            _ => -1,
        }
    }

    /// The order-preserving encoding of the type's values; `None` for character types.
    pub fn ordered_kind(&self) -> Option<OrderedKind> {
        match self {
            LogicalType::Text | LogicalType::Varchar(_) | LogicalType::Char(_) => None,
            LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => Some(OrderedKind::Integer),
            LogicalType::Numeric { scale, .. } => Some(OrderedKind::Decimal { scale: *scale }),
            LogicalType::Date => Some(OrderedKind::Date),
            LogicalType::Timestamp => Some(OrderedKind::Timestamp),
        }
    }

    /// What the values are, regardless of length and precision.
    pub fn canonical_class(&self) -> CanonicalClass {
        match self {
            LogicalType::Text | LogicalType::Varchar(_) | LogicalType::Char(_) => {
                CanonicalClass::Text
            }
            LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => CanonicalClass::Integer,
            LogicalType::Numeric { scale, .. } => CanonicalClass::Decimal { scale: *scale },
            LogicalType::Date => CanonicalClass::Date,
            LogicalType::Timestamp => CanonicalClass::Timestamp,
        }
    }

    /// The plaintext to seal for a value in PostgreSQL's text format.
    pub fn plaintext_from_text(&self, mode: Mode, text: &[u8]) -> Result<Vec<u8>, ValueError> {
        let value = self.parse_text(text, true)?;
        self.encode_plaintext(mode, value)
    }

    /// The text format of a plaintext: what PostgreSQL prints for the value (`char(n)` padded).
    pub fn plaintext_to_text(&self, mode: Mode, plaintext: &[u8]) -> Result<Vec<u8>, ValueError> {
        let value = self.decode_plaintext(mode, plaintext)?;
        Ok(self.output_text(&value).into_bytes())
    }

    /// The plaintext to seal for a value in PostgreSQL's binary format.
    pub fn plaintext_from_pg_binary(
        &self,
        mode: Mode,
        bytes: &[u8],
    ) -> Result<Vec<u8>, ValueError> {
        let value = self.parse_binary(bytes)?;
        self.encode_plaintext(mode, value)
    }

    /// PostgreSQL's binary format of a plaintext.
    pub fn plaintext_to_pg_binary(
        &self,
        mode: Mode,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ValueError> {
        let value = self.decode_plaintext(mode, plaintext)?;
        self.output_binary(&value)
    }

    // --- plaintexts ---

    fn encode_plaintext(&self, mode: Mode, value: Canon) -> Result<Vec<u8>, ValueError> {
        match (mode, value) {
            (Mode::OrderPreserving, Canon::Ordered(v)) => Ok(v.to_be_bytes().to_vec()),
            (Mode::OrderPreserving, Canon::Text(_)) => Err(self.not_ordered()),
            (_, Canon::Text(t)) => Ok(t.into_bytes()),
            (_, value @ Canon::Ordered(_)) => Ok(self.canonical_text(&value).into_bytes()),
        }
    }

    fn decode_plaintext(&self, mode: Mode, plaintext: &[u8]) -> Result<Canon, ValueError> {
        if mode != Mode::OrderPreserving {
            // Canonical text, written by `encode_plaintext`; parsed again (without length limits,
            // so that a value written before the type was narrowed still reads).
            return self.parse_text(plaintext, false);
        }
        if self.ordered_kind().is_none() {
            return Err(self.not_ordered());
        }
        let bytes: [u8; 8] = plaintext.try_into().map_err(|_| {
            ValueError::new(format!(
                "an order-preserving plaintext is 8 bytes, found {}",
                plaintext.len()
            ))
        })?;
        self.check_ordered(i64::from_be_bytes(bytes), plaintext)
            .map(Canon::Ordered)
    }

    fn not_ordered(&self) -> ValueError {
        ValueError::new(format!(
            "order-preserving encryption needs an integer, numeric, date or timestamp type, not {}",
            self.sql_name()
        ))
    }

    /// Checks that an order-preserving `i64` is a value of the type (`shown_as` for messages).
    fn check_ordered(&self, v: i64, shown_as: &[u8]) -> Result<i64, ValueError> {
        let ok = match self {
            LogicalType::Int2 => i16::try_from(v).is_ok(),
            LogicalType::Int4 => i32::try_from(v).is_ok(),
            LogicalType::Int8 => true,
            LogicalType::Numeric { precision, scale } => {
                let (precision, scale) = self.numeric_limits(*precision, *scale)?;
                let limit = 10u64.checked_pow(u32::from(precision)).unwrap_or(0);
                if v.unsigned_abs() >= limit {
                    return Err(self.numeric_overflow(
                        OrderedKind::Decimal { scale }.format(v).as_bytes(),
                        precision,
                        scale,
                    ));
                }
                true
            }
            LogicalType::Date => (MIN_DAY..=MAX_DAY).contains(&v),
            LogicalType::Timestamp => {
                (MIN_DAY * MICROS_PER_DAY..(MAX_DAY + 1) * MICROS_PER_DAY).contains(&v)
            }
            LogicalType::Text | LogicalType::Varchar(_) | LogicalType::Char(_) => {
                return Err(self.not_ordered());
            }
        };
        if ok {
            return Ok(v);
        }
        Err(match self {
            LogicalType::Date | LogicalType::Timestamp => ValueError::new(format!(
                "{} value {} is out of range for an encrypted column (0001-01-01 to 9999-12-31)",
                self.base_name(),
                shown(shown_as)
            )),
            _ => self.out_of_range(shown_as),
        })
    }

    fn numeric_limits(&self, precision: u8, scale: u8) -> Result<(u8, u8), ValueError> {
        if precision == 0 || precision > MAX_NUMERIC_PRECISION || scale > precision {
            return Err(ValueError::new(format!(
                "{} is not a valid encrypted column type (precision 1 to {MAX_NUMERIC_PRECISION}, scale at most the precision)",
                self.sql_name()
            )));
        }
        Ok((precision, scale))
    }

    fn out_of_range(&self, value: &[u8]) -> ValueError {
        ValueError::new(format!(
            "value {} is out of range for type {}",
            shown(value),
            self.base_name()
        ))
    }

    fn invalid(&self, value: &[u8], expected: &str) -> ValueError {
        ValueError::new(format!(
            "{} is not a valid {}{expected}",
            shown(value),
            self.base_name()
        ))
    }

    fn numeric_overflow(&self, value: &[u8], precision: u8, scale: u8) -> ValueError {
        ValueError::new(format!(
            "numeric field overflow: {} does not fit {} (it must round to an absolute value less than 10^{})",
            shown(value),
            self.sql_name(),
            precision - scale
        ))
    }

    // --- text format ---

    /// Parses the text format. `strict`: apply length limits (input); without, only check
    /// that the text is a value (output of stored plaintexts).
    fn parse_text(&self, bytes: &[u8], strict: bool) -> Result<Canon, ValueError> {
        let text = utf8(bytes)?;
        match self {
            LogicalType::Text | LogicalType::Varchar(None) => Ok(Canon::Text(text.to_string())),
            LogicalType::Varchar(Some(n)) => match text.char_indices().nth(*n as usize) {
                Some((cut, _)) if strict => {
                    if text[cut..].bytes().all(|b| b == b' ') {
                        Ok(Canon::Text(text[..cut].to_string()))
                    } else {
                        Err(self.too_long())
                    }
                }
                _ => Ok(Canon::Text(text.to_string())),
            },
            LogicalType::Char(n) => {
                let stripped = text.trim_end_matches(' ');
                if strict && stripped.chars().nth(*n as usize).is_some() {
                    return Err(self.too_long());
                }
                Ok(Canon::Text(stripped.to_string()))
            }
            LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => {
                self.parse_integer(text).map(Canon::Ordered)
            }
            LogicalType::Numeric { precision, scale } => {
                let (precision, scale) = self.numeric_limits(*precision, *scale)?;
                let trimmed = text.trim_matches(is_space).to_ascii_lowercase();
                if matches!(
                    trimmed.trim_start_matches(['+', '-']),
                    "nan" | "inf" | "infinity"
                ) {
                    return Err(ValueError::new(format!(
                        "{} is not allowed in an encrypted {} column",
                        shown(bytes),
                        self.sql_name()
                    )));
                }
                let digits = Digits::parse(text).ok_or_else(|| self.invalid(bytes, ""))?;
                digits
                    .round(precision, scale)
                    .map(Canon::Ordered)
                    .ok_or_else(|| self.numeric_overflow(bytes, precision, scale))
            }
            LogicalType::Date => {
                let days = match OrderedKind::Date.parse(text) {
                    Ok(days) => days,
                    // PostgreSQL takes the date of a timestamp.
                    Err(_) => parse_timestamp(text)
                        .map(|micros| micros.div_euclid(MICROS_PER_DAY))
                        .ok_or_else(|| self.invalid(bytes, " (expected YYYY-MM-DD)"))?,
                };
                self.check_ordered(days, bytes).map(Canon::Ordered)
            }
            LogicalType::Timestamp => {
                let micros = parse_timestamp(text).ok_or_else(|| {
                    self.invalid(bytes, " (expected YYYY-MM-DD HH:MM:SS[.ffffff])")
                })?;
                self.check_ordered(micros, bytes).map(Canon::Ordered)
            }
        }
    }

    fn too_long(&self) -> ValueError {
        ValueError::new(format!("value too long for type {}", self.sql_name()))
    }

    fn parse_integer(&self, text: &str) -> Result<i64, ValueError> {
        let t = text.trim_matches(is_space);
        let (negative, digits) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(text.as_bytes(), ""));
        }
        let mut v: i128 = 0;
        for b in digits.bytes() {
            v = v * 10 + i128::from(b - b'0');
            if v > i128::from(i64::MAX) + 1 {
                return Err(self.out_of_range(t.as_bytes()));
            }
        }
        let v = i64::try_from(if negative { -v } else { v })
            .map_err(|_| self.out_of_range(t.as_bytes()))?;
        self.check_ordered(v, t.as_bytes())
    }

    /// The canonical text of a value (`char(n)` unpadded).
    fn canonical_text(&self, value: &Canon) -> String {
        match value {
            Canon::Text(t) => t.clone(),
            Canon::Ordered(v) => match self.ordered_kind() {
                Some(kind) => kind.format(*v),
                None => v.to_string(),
            },
        }
    }

    fn output_text(&self, value: &Canon) -> String {
        let mut text = self.canonical_text(value);
        if let LogicalType::Char(n) = self {
            let len = text.chars().count();
            let n = *n as usize;
            if len < n {
                text.extend(std::iter::repeat_n(' ', n - len));
            }
        }
        text
    }

    // --- binary format ---

    fn parse_binary(&self, bytes: &[u8]) -> Result<Canon, ValueError> {
        let fixed = |n: usize| -> Result<&[u8], ValueError> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(ValueError::new(format!(
                    "invalid binary value for type {}: {} bytes, expected {n}",
                    self.base_name(),
                    bytes.len()
                )))
            }
        };
        match self {
            LogicalType::Text | LogicalType::Varchar(_) | LogicalType::Char(_) => {
                self.parse_text(bytes, true)
            }
            LogicalType::Int2 | LogicalType::Int4 | LogicalType::Int8 => {
                // Any integer width: the length says which.
                let v = match *bytes {
                    [a, b] => i64::from(i16::from_be_bytes([a, b])),
                    [a, b, c, d] => i64::from(i32::from_be_bytes([a, b, c, d])),
                    [a, b, c, d, e, f, g, h] => i64::from_be_bytes([a, b, c, d, e, f, g, h]),
                    _ => {
                        return Err(ValueError::new(format!(
                            "invalid binary value for type {}: {} bytes, expected {}",
                            self.base_name(),
                            bytes.len(),
                            self.pg_typlen()
                        )));
                    }
                };
                self.check_ordered(v, v.to_string().as_bytes())
                    .map(Canon::Ordered)
            }
            LogicalType::Numeric { precision, scale } => {
                let (precision, scale) = self.numeric_limits(*precision, *scale)?;
                let digits = decode_pg_numeric(bytes).map_err(|reason| {
                    ValueError::new(format!("invalid binary value for type numeric: {reason}"))
                })?;
                digits
                    .round(precision, scale)
                    .map(Canon::Ordered)
                    .ok_or_else(|| {
                        self.numeric_overflow(digits.to_text().as_bytes(), precision, scale)
                    })
            }
            LogicalType::Date => {
                let d = i32::from_be_bytes(fixed(4)?.try_into().expect("4"));
                let days = i64::from(d) + PG_EPOCH_DAYS;
                let shown_as = if (MIN_DAY..=MAX_DAY).contains(&days) {
                    OrderedKind::Date.format(days)
                } else {
                    format!("{d} days after 2000-01-01")
                };
                self.check_ordered(days, shown_as.as_bytes())
                    .map(Canon::Ordered)
            }
            LogicalType::Timestamp => {
                let t = i64::from_be_bytes(fixed(8)?.try_into().expect("8"));
                let micros = t.checked_add(PG_EPOCH_DAYS * MICROS_PER_DAY);
                match micros {
                    Some(m)
                        if (MIN_DAY * MICROS_PER_DAY..(MAX_DAY + 1) * MICROS_PER_DAY)
                            .contains(&m) =>
                    {
                        Ok(Canon::Ordered(m))
                    }
                    _ => Err(ValueError::new(format!(
                        "timestamp value {t} µs after 2000-01-01 is out of range for an encrypted column (0001-01-01 to 9999-12-31)"
                    ))),
                }
            }
        }
    }

    fn output_binary(&self, value: &Canon) -> Result<Vec<u8>, ValueError> {
        let v = match value {
            Canon::Text(_) => return Ok(self.output_text(value).into_bytes()),
            Canon::Ordered(v) => *v,
        };
        let narrow = |r: Result<Vec<u8>, std::num::TryFromIntError>| {
            r.map_err(|_| self.out_of_range(v.to_string().as_bytes()))
        };
        match self {
            LogicalType::Text | LogicalType::Varchar(_) | LogicalType::Char(_) => {
                Ok(self.output_text(value).into_bytes())
            }
            LogicalType::Int2 => narrow(i16::try_from(v).map(|v| v.to_be_bytes().to_vec())),
            LogicalType::Int4 => narrow(i32::try_from(v).map(|v| v.to_be_bytes().to_vec())),
            LogicalType::Int8 => Ok(v.to_be_bytes().to_vec()),
            LogicalType::Numeric { scale, .. } => Ok(encode_pg_numeric(v, *scale)),
            LogicalType::Date => {
                narrow(i32::try_from(v - PG_EPOCH_DAYS).map(|d| d.to_be_bytes().to_vec()))
            }
            LogicalType::Timestamp => {
                Ok((v - PG_EPOCH_DAYS * MICROS_PER_DAY).to_be_bytes().to_vec())
            }
        }
    }
}

/// Valid UTF-8 without NUL, or PostgreSQL's error.
fn utf8(bytes: &[u8]) -> Result<&str, ValueError> {
    let bad = |at: usize, len: usize| {
        let seq: Vec<String> = bytes[at..(at + len).min(bytes.len())]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        ValueError::new(format!(
            "invalid byte sequence for encoding \"UTF8\": {}",
            seq.join(" ")
        ))
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        bad(at, e.error_len().unwrap_or(bytes.len() - at).clamp(1, 2))
    })?;
    match text.find('\0') {
        Some(at) => Err(bad(at, 1)),
        None => Ok(text),
    }
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD[ T]HH:MM:SS[.f…][ ][offset]`, to microseconds since 1970.
/// Fractions beyond microseconds are rounded (half up); an offset is checked and ignored.
fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim_matches(is_space);
    if let Ok(days) = OrderedKind::Date.parse(t) {
        return days.checked_mul(MICROS_PER_DAY);
    }
    let head = t.get(..19)?;
    if head.ends_with(is_space) || head.starts_with(is_space) {
        return None;
    }
    let base = OrderedKind::Timestamp.parse(head).ok()?;
    let mut rest = &t[19..];
    let mut micros = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &r.as_bytes()[..n];
        for i in 0..6 {
            micros = micros * 10 + i64::from(digits.get(i).map_or(0, |d| d - b'0'));
        }
        if digits.get(6).is_some_and(|&d| d >= b'5') {
            micros += 1;
        }
        rest = &r[n..];
    }
    let offset = rest.trim_start_matches(' ');
    if !offset.is_empty() && !is_offset(offset) {
        return None;
    }
    base.checked_add(micros)
}

/// `Z`, `±HH`, `±HHMM`, `±HH:MM`, `±HH:MM:SS`.
fn is_offset(s: &str) -> bool {
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return true;
    }
    let Some(rest) = s.strip_prefix(['+', '-']) else {
        return false;
    };
    let b = rest.as_bytes();
    let two = |i: usize, max: u8| {
        b.get(i..i + 2).is_some_and(|d| {
            d.iter().all(u8::is_ascii_digit) && (d[0] - b'0') * 10 + (d[1] - b'0') <= max
        })
    };
    match b.len() {
        2 => two(0, 15),
        4 => two(0, 15) && two(2, 59),
        5 => two(0, 15) && b[2] == b':' && two(3, 59),
        8 => two(0, 15) && b[2] == b':' && two(3, 59) && b[5] == b':' && two(6, 59),
        _ => false,
    }
}

impl Digits {
    /// Plain decimal text, for messages.
    fn to_text(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        // Long or far-off values are shown in scientific notation.
        if self.int_len > 40 || self.int_len < -40 || self.digits.len() > 40 {
            out.push_str("0.");
            for d in self.digits.iter().take(40) {
                out.push(char::from(b'0' + d));
            }
            let _ = write!(out, "e{}", self.int_len);
            return out;
        }
        let int_len = self.int_len.max(0) as usize;
        for i in 0..int_len {
            out.push(char::from(b'0' + self.digits.get(i).copied().unwrap_or(0)));
        }
        if int_len == 0 {
            out.push('0');
        }
        if self.digits.len() > int_len {
            out.push('.');
            for _ in self.int_len..0 {
                out.push('0');
            }
            for d in &self.digits[int_len..] {
                out.push(char::from(b'0' + d));
            }
        }
        out
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Decodes PostgreSQL's binary numeric: `ndigits i16, weight i16, sign u16, dscale i16`, then
/// `ndigits` base-10000 digits, the first of weight `weight`.
fn decode_pg_numeric(b: &[u8]) -> Result<Digits, String> {
    if b.len() < 8 {
        return Err(format!("{} bytes, at least 8 expected", b.len()));
    }
    let ndigits = be_i16(b, 0);
    let weight = be_i16(b, 2);
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = be_i16(b, 6);
    if ndigits < 0 {
        return Err(format!("negative digit count {ndigits}"));
    }
    let expected = 8 + 2 * ndigits as usize;
    if b.len() != expected {
        return Err(format!(
            "{} bytes for {ndigits} digits, expected {expected}",
            b.len()
        ));
    }
    let negative = match sign {
        NUMERIC_POS => false,
        NUMERIC_NEG => true,
        NUMERIC_NAN => return Err("NaN is not allowed in an encrypted column".into()),
        0xD000 | 0xF000 => return Err("infinity is not allowed in an encrypted column".into()),
        other => return Err(format!("invalid sign word {other:#06x}")),
    };
    if !(0..=0x3FFF).contains(&dscale) {
        return Err(format!("invalid display scale {dscale}"));
    }
    let mut digits = Vec::with_capacity(4 * ndigits as usize);
    for i in 0..ndigits as usize {
        let d = be_i16(b, 8 + 2 * i);
        if !(0..10_000).contains(&d) {
            return Err(format!("invalid base-10000 digit {d}"));
        }
        let d = d as u16;
        digits.extend([d / 1000, d / 100 % 10, d / 10 % 10, d % 10].map(|x| x as u8));
    }
    Ok(Digits::new(negative, digits, (i64::from(weight) + 1) * 4))
}

/// Encodes the unscaled value `v` at `scale` as PostgreSQL's binary numeric with display scale
/// `scale`, digits stripped of leading and trailing zero groups as PostgreSQL sends them.
fn encode_pg_numeric(v: i64, scale: u8) -> Vec<u8> {
    let scale_digits = usize::from(scale).min(18);
    let magnitude = v.unsigned_abs().to_string();
    let padded = format!("{magnitude:0>width$}", width = scale_digits + 1);
    let (int, frac) = padded.split_at(padded.len() - scale_digits);
    let int = int.trim_start_matches('0');
    // Base-10000 groups aligned on the decimal point.
    let int_groups = int.len().div_ceil(4);
    let int_aligned = format!("{int:0>width$}", width = int_groups * 4);
    let frac_aligned = format!("{frac:0<width$}", width = frac.len().div_ceil(4) * 4);
    let mut groups: Vec<i16> = int_aligned
        .as_bytes()
        .chunks(4)
        .chain(frac_aligned.as_bytes().chunks(4))
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = int_groups as i16 - 1;
    let leading = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..leading);
    weight -= leading as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign = if v < 0 { NUMERIC_NEG } else { NUMERIC_POS };
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&i16::from(scale).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use warden_crypto::ope::value::days_from_civil;

    const OPE: Mode = Mode::OrderPreserving;
    const DET: Mode = Mode::Deterministic;
    const MODES: [Mode; 3] = [Mode::Randomized, Mode::Deterministic, Mode::OrderPreserving];

    fn all_types() -> Vec<LogicalType> {
        vec![
            LogicalType::Text,
            LogicalType::Varchar(Some(18)),
            LogicalType::Varchar(None),
            LogicalType::Char(4),
            LogicalType::Int2,
            LogicalType::Int4,
            LogicalType::Int8,
            LogicalType::Numeric {
                precision: 12,
                scale: 2,
            },
            LogicalType::Numeric {
                precision: 18,
                scale: 0,
            },
            LogicalType::Numeric {
                precision: 18,
                scale: 18,
            },
            LogicalType::Date,
            LogicalType::Timestamp,
        ]
    }

    fn t(s: &str) -> LogicalType {
        LogicalType::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Text in → canonical text out, through the plaintext of `mode`.
    fn canon(ty: LogicalType, mode: Mode, text: &str) -> Result<String, String> {
        let p = ty
            .plaintext_from_text(mode, text.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = ty.plaintext_to_text(mode, &p).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn err(ty: LogicalType, text: &str) -> String {
        ty.plaintext_from_text(DET, text.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn epoch_constants() {
        assert_eq!(MIN_DAY, days_from_civil(1, 1, 1));
        assert_eq!(MAX_DAY, days_from_civil(9999, 12, 31));
        assert_eq!(PG_EPOCH_DAYS, days_from_civil(2000, 1, 1));
    }

    #[test]
    fn parses_type_spellings() {
        let cases = [
            ("text", LogicalType::Text),
            ("TEXT", LogicalType::Text),
            ("longtext", LogicalType::Text),
            ("varchar(18)", LogicalType::Varchar(Some(18))),
            ("VARCHAR ( 18 )", LogicalType::Varchar(Some(18))),
            ("character varying(18)", LogicalType::Varchar(Some(18))),
            ("character  varying", LogicalType::Varchar(None)),
            ("varchar", LogicalType::Varchar(None)),
            ("char(4)", LogicalType::Char(4)),
            ("character(4)", LogicalType::Char(4)),
            ("bpchar(4)", LogicalType::Char(4)),
            ("char", LogicalType::Char(1)),
            ("smallint", LogicalType::Int2),
            ("int2", LogicalType::Int2),
            ("integer", LogicalType::Int4),
            ("int", LogicalType::Int4),
            ("int4", LogicalType::Int4),
            ("int(11)", LogicalType::Int4),
            ("bigint", LogicalType::Int8),
            ("int8", LogicalType::Int8),
            ("bigint(20)", LogicalType::Int8),
            (
                "numeric(12,2)",
                LogicalType::Numeric {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                " Numeric ( 12 , 2 ) ",
                LogicalType::Numeric {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                "numeric(9)",
                LogicalType::Numeric {
                    precision: 9,
                    scale: 0,
                },
            ),
            (
                "decimal(18,4)",
                LogicalType::Numeric {
                    precision: 18,
                    scale: 4,
                },
            ),
            ("date", LogicalType::Date),
            ("timestamp", LogicalType::Timestamp),
            ("timestamp without time zone", LogicalType::Timestamp),
            ("Timestamp(6) Without Time Zone", LogicalType::Timestamp),
            ("timestamp(3)", LogicalType::Timestamp),
            ("datetime", LogicalType::Timestamp),
            ("datetime(6)", LogicalType::Timestamp),
        ];
        for (text, ty) in cases {
            assert_eq!(LogicalType::parse(text), Ok(ty), "{text}");
        }
    }

    #[test]
    fn type_errors_name_the_type() {
        let e = LogicalType::parse("timestamptz").unwrap_err();
        assert_eq!(
            e,
            "timestamp with time zone is not supported for encrypted columns; use timestamp"
        );
        assert_eq!(
            LogicalType::parse("timestamp(6) with time zone").unwrap_err(),
            e
        );
        let e = LogicalType::parse("numeric(20,2)").unwrap_err();
        assert!(e.contains("18") && e.contains("numeric(20,2)"), "{e}");
        let e = LogicalType::parse("numeric(4,5)").unwrap_err();
        assert!(e.contains("scale"), "{e}");
        let e = LogicalType::parse("numeric").unwrap_err();
        assert!(e.contains("precision"), "{e}");
        let e = LogicalType::parse("jsonb").unwrap_err();
        assert!(e.contains("\"jsonb\"") && e.contains("varchar(n)"), "{e}");
        for bad in [
            "",
            "varchar(0)",
            "varchar(x)",
            "varchar(1,2)",
            "varchar(18",
            "text(3)",
            "integer[]",
            "int unsigned",
            "timestamp(7)",
            "bpchar",
            "numeric(0)",
            "numeric(-1)",
            "date(1)(2)",
        ] {
            assert!(LogicalType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn describes_types_like_postgresql() {
        let cases: [(&str, &str, u32, i16, i32); 10] = [
            ("text", "text", 25, -1, -1),
            ("varchar(18)", "character varying(18)", 1043, -1, 22),
            ("varchar", "character varying", 1043, -1, -1),
            ("char(4)", "character(4)", 1042, -1, 8),
            ("int2", "smallint", 21, 2, -1),
            ("int", "integer", 23, 4, -1),
            ("int8", "bigint", 20, 8, -1),
            (
                "decimal(12,2)",
                "numeric(12,2)",
                1700,
                -1,
                ((12 << 16) | 2) + 4,
            ),
            ("date", "date", 1082, 4, -1),
            ("datetime", "timestamp without time zone", 1114, 8, -1),
        ];
        for (text, name, oid, len, typmod) in cases {
            let ty = t(text);
            assert_eq!(ty.sql_name(), name);
            assert_eq!(ty.pg_oid(), oid, "{text}");
            assert_eq!(ty.pg_typlen(), len, "{text}");
            assert_eq!(ty.pg_typmod(), typmod, "{text}");
            assert_eq!(LogicalType::parse(name), Ok(ty), "sql_name parses back");
        }
    }

    #[test]
    fn kinds_and_classes() {
        assert_eq!(LogicalType::Text.ordered_kind(), None);
        assert_eq!(LogicalType::Char(3).ordered_kind(), None);
        assert_eq!(LogicalType::Int2.ordered_kind(), Some(OrderedKind::Integer));
        assert_eq!(
            t("numeric(9,3)").ordered_kind(),
            Some(OrderedKind::Decimal { scale: 3 })
        );
        assert_eq!(LogicalType::Date.ordered_kind(), Some(OrderedKind::Date));
        assert_eq!(
            LogicalType::Timestamp.ordered_kind(),
            Some(OrderedKind::Timestamp)
        );
        assert_eq!(
            t("varchar(3)").canonical_class(),
            t("text").canonical_class()
        );
        assert_eq!(t("int2").canonical_class(), CanonicalClass::Integer);
        assert_eq!(t("bigint").canonical_class(), CanonicalClass::Integer);
        assert_eq!(
            t("numeric(9,2)").canonical_class(),
            t("numeric(12,2)").canonical_class()
        );
        assert_ne!(
            t("numeric(9,2)").canonical_class(),
            t("numeric(9,3)").canonical_class()
        );
    }

    #[test]
    fn text_types() {
        let vc = t("varchar(5)");
        assert_eq!(canon(vc, DET, "héllo").unwrap(), "héllo");
        assert_eq!(
            canon(vc, DET, "ab  ").unwrap(),
            "ab  ",
            "varchar keeps blanks"
        );
        assert_eq!(
            canon(vc, DET, "abcde   ").unwrap(),
            "abcde",
            "excess blanks cut"
        );
        assert_eq!(
            err(vc, "abcdef"),
            "value too long for type character varying(5)"
        );
        assert_eq!(
            err(t("varchar(18)"), "1101011990030745781"),
            "value too long for type character varying(18)"
        );
        let ch = t("char(4)");
        assert_eq!(ch.plaintext_from_text(DET, b"ab  ").unwrap(), b"ab");
        assert_eq!(ch.plaintext_from_text(DET, b"ab").unwrap(), b"ab");
        assert_eq!(canon(ch, DET, "ab").unwrap(), "ab  ");
        assert_eq!(canon(ch, DET, "abcd      ").unwrap(), "abcd");
        assert_eq!(canon(ch, DET, "").unwrap(), "    ");
        assert_eq!(err(ch, "abcde"), "value too long for type character(4)");
        assert_eq!(canon(t("text"), DET, "").unwrap(), "");
        assert_eq!(
            err(t("text"), "a\0b"),
            "invalid byte sequence for encoding \"UTF8\": 0x00"
        );
        let e = t("text")
            .plaintext_from_text(DET, b"ab\xc3\x28")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid byte sequence for encoding \"UTF8\": 0xc3"
        );
        let e = t("text").plaintext_from_text(OPE, b"x").unwrap_err();
        assert!(e.to_string().contains("order-preserving"), "{e}");
        // Output does not re-apply the length limit.
        assert_eq!(
            t("varchar(2)").plaintext_to_text(DET, b"abc").unwrap(),
            b"abc"
        );
    }

    #[test]
    fn integers() {
        for mode in MODES {
            assert_eq!(canon(LogicalType::Int4, mode, " +007 ").unwrap(), "7");
            assert_eq!(canon(LogicalType::Int4, mode, "-0").unwrap(), "0");
            assert_eq!(canon(LogicalType::Int2, mode, "-32768").unwrap(), "-32768");
            assert_eq!(
                canon(LogicalType::Int8, mode, "-9223372036854775808").unwrap(),
                "-9223372036854775808"
            );
        }
        assert_eq!(
            LogicalType::Int4.plaintext_from_text(DET, b"007").unwrap(),
            b"7"
        );
        assert_eq!(
            LogicalType::Int4.plaintext_from_text(OPE, b"7").unwrap(),
            7i64.to_be_bytes()
        );
        assert_eq!(
            err(LogicalType::Int2, "32768"),
            "value \"32768\" is out of range for type smallint"
        );
        assert_eq!(
            err(LogicalType::Int4, "2147483648"),
            "value \"2147483648\" is out of range for type integer"
        );
        assert_eq!(
            err(LogicalType::Int8, "9223372036854775808"),
            "value \"9223372036854775808\" is out of range for type bigint"
        );
        assert_eq!(
            err(
                LogicalType::Int8,
                "99999999999999999999999999999999999999999999"
            ),
            "value \"99999999999999999999999999999999999999999999\" is out of range for type bigint"
        );
        assert_eq!(
            err(LogicalType::Int8, "12x"),
            "\"12x\" is not a valid bigint"
        );
        for bad in ["", "-", "1.0", "1e3", "0x10", "1 2"] {
            assert!(
                LogicalType::Int4
                    .plaintext_from_text(DET, bad.as_bytes())
                    .is_err(),
                "{bad}"
            );
        }
        let long = "9".repeat(200);
        let e = err(LogicalType::Int8, &format!("x{long}"));
        assert!(e.len() < 100 && e.contains('…'), "{e}");
    }

    #[test]
    fn numerics() {
        let n = t("numeric(12,2)");
        for mode in MODES {
            assert_eq!(canon(n, mode, "1.5").unwrap(), "1.50");
            assert_eq!(canon(n, mode, "-0.001").unwrap(), "0.00");
            assert_eq!(canon(n, mode, "-0.005").unwrap(), "-0.01");
            assert_eq!(canon(n, mode, "0.005").unwrap(), "0.01");
            assert_eq!(canon(n, mode, "0.00499999").unwrap(), "0.00");
            assert_eq!(canon(n, mode, "+0012345.675").unwrap(), "12345.68");
            assert_eq!(canon(n, mode, ".5").unwrap(), "0.50");
            assert_eq!(canon(n, mode, "5.").unwrap(), "5.00");
            assert_eq!(canon(n, mode, "1.5e3").unwrap(), "1500.00");
            assert_eq!(canon(n, mode, "15E-3").unwrap(), "0.02");
            assert_eq!(canon(n, mode, "1e-1000000000").unwrap(), "0.00");
            assert_eq!(canon(n, mode, "9999999999.99").unwrap(), "9999999999.99");
            assert_eq!(canon(n, mode, "-9999999999.994").unwrap(), "-9999999999.99");
        }
        assert_eq!(n.plaintext_from_text(DET, b" 1.5 ").unwrap(), b"1.50");
        assert_eq!(
            n.plaintext_from_text(OPE, b"1.5").unwrap(),
            150i64.to_be_bytes()
        );
        let e = err(n, "9999999999.995");
        assert!(e.starts_with("numeric field overflow"), "{e}");
        assert!(e.contains("numeric(12,2)") && e.contains("10^10"), "{e}");
        assert!(err(n, "1e10").starts_with("numeric field overflow"));
        assert!(err(n, "1e1000000000").starts_with("numeric field overflow"));
        assert_eq!(err(n, "12x"), "\"12x\" is not a valid numeric");
        for bad in ["", ".", "-", "1..2", "e5", "1e", "1e+", "1 2", "1,5"] {
            assert!(n.plaintext_from_text(DET, bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(err(n, "NaN").contains("not allowed"));
        assert!(err(n, "-Infinity").contains("not allowed"));
        let whole = t("numeric(3)");
        assert_eq!(canon(whole, DET, "2.5").unwrap(), "3");
        assert_eq!(canon(whole, DET, "-2.5").unwrap(), "-3");
        assert!(err(whole, "999.5").starts_with("numeric field overflow"));
        let frac = t("numeric(2,2)");
        assert_eq!(canon(frac, DET, "0.994").unwrap(), "0.99");
        assert!(err(frac, "0.995").starts_with("numeric field overflow"));
        let wide = t("numeric(18,18)");
        assert_eq!(
            canon(wide, OPE, "0.123456789012345678").unwrap(),
            "0.123456789012345678"
        );
        // An out-of-contract type is an error, not a panic.
        let broken = LogicalType::Numeric {
            precision: 40,
            scale: 2,
        };
        assert!(broken.plaintext_from_text(DET, b"1").is_err());
        assert!(broken.plaintext_to_pg_binary(OPE, &[0; 8]).is_err());
    }

    #[test]
    fn dates_and_timestamps() {
        let d = LogicalType::Date;
        let ts = LogicalType::Timestamp;
        for mode in MODES {
            assert_eq!(canon(d, mode, " 2024-02-29 ").unwrap(), "2024-02-29");
            assert_eq!(canon(d, mode, "2024-02-29 13:00:00").unwrap(), "2024-02-29");
            assert_eq!(canon(d, mode, "0001-01-01").unwrap(), "0001-01-01");
            assert_eq!(canon(d, mode, "9999-12-31").unwrap(), "9999-12-31");
            assert_eq!(
                canon(ts, mode, "2024-06-30T12:34:56.120000").unwrap(),
                "2024-06-30 12:34:56.12"
            );
            assert_eq!(
                canon(ts, mode, "2024-06-30 12:34:56").unwrap(),
                "2024-06-30 12:34:56"
            );
            assert_eq!(
                canon(ts, mode, "2024-06-30").unwrap(),
                "2024-06-30 00:00:00"
            );
            assert_eq!(
                canon(ts, mode, "2024-06-30 12:34:56+08").unwrap(),
                "2024-06-30 12:34:56",
                "the offset is ignored, as PostgreSQL does for timestamp"
            );
            assert_eq!(
                canon(ts, mode, "2024-06-30 12:34:56.5 -05:30").unwrap(),
                "2024-06-30 12:34:56.5"
            );
            assert_eq!(
                canon(ts, mode, "2024-12-31 23:59:59.9999995").unwrap(),
                "2025-01-01 00:00:00",
                "rounded to microseconds"
            );
        }
        assert_eq!(
            d.plaintext_from_text(OPE, b"1970-01-02").unwrap(),
            1i64.to_be_bytes()
        );
        assert_eq!(
            ts.plaintext_from_text(DET, b"2024-06-30T12:34:56.000")
                .unwrap(),
            b"2024-06-30 12:34:56"
        );
        assert_eq!(
            err(d, "2023-02-29"),
            "\"2023-02-29\" is not a valid date (expected YYYY-MM-DD)"
        );
        assert!(err(d, "0000-12-31").contains("out of range"));
        assert!(err(ts, "0000-12-31 00:00:00").contains("out of range"));
        assert!(err(ts, "9999-12-31 23:59:59.9999999").contains("out of range"));
        assert_eq!(
            err(ts, "2024-06-30 25:00:00"),
            "\"2024-06-30 25:00:00\" is not a valid timestamp (expected YYYY-MM-DD HH:MM:SS[.ffffff])"
        );
        for bad in [
            "infinity",
            "2024-06-30 12:34",
            "2024-06-30 12:34:56.",
            "2024-06-30 12:34:56 x",
            "2024-06-30 12:34:56+8",
            "2024-06-30  12:34:56",
            "2024-06-30é12:34:56",
        ] {
            assert!(
                ts.plaintext_from_text(DET, bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn numeric_binary_known_encodings() {
        fn enc(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
            let mut v = Vec::new();
            for x in [ndigits, weight, sign as i16, dscale] {
                v.extend_from_slice(&x.to_be_bytes());
            }
            for d in digits {
                v.extend_from_slice(&d.to_be_bytes());
            }
            v
        }
        let n = t("numeric(12,2)");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("12345.67", enc(3, 1, 0, 2, &[1, 2345, 6700])),
            ("0.00", enc(0, 0, 0, 2, &[])),
            ("-1.50", enc(2, 0, 0x4000, 2, &[1, 5000])),
            ("0.50", enc(1, -1, 0, 2, &[5000])),
            ("0.01", enc(1, -1, 0, 2, &[100])),
            ("100000000.00", enc(1, 2, 0, 2, &[1])),
            ("9999999999.99", enc(4, 2, 0, 2, &[99, 9999, 9999, 9900])),
        ];
        for mode in MODES {
            for (text, binary) in &cases {
                let p = n.plaintext_from_text(mode, text.as_bytes()).unwrap();
                assert_eq!(
                    &n.plaintext_to_pg_binary(mode, &p).unwrap(),
                    binary,
                    "{text}"
                );
                let p2 = n.plaintext_from_pg_binary(mode, binary).unwrap();
                assert_eq!(p2, p, "{text}");
                assert_eq!(n.plaintext_to_text(mode, &p2).unwrap(), text.as_bytes());
            }
        }
        let tiny = t("numeric(6,5)");
        assert_eq!(
            tiny.plaintext_to_pg_binary(DET, b"0.00001").unwrap(),
            enc(1, -2, 0, 5, &[1000])
        );
        let whole = t("numeric(18)");
        assert_eq!(
            whole
                .plaintext_to_pg_binary(DET, b"-123456789012345678")
                .unwrap(),
            enc(5, 4, 0x4000, 0, &[12, 3456, 7890, 1234, 5678])
        );
        // Input with another display scale, and more digits than the column keeps: rounded.
        assert_eq!(
            n.plaintext_from_pg_binary(DET, &enc(2, 0, 0, 4, &[1, 2350]))
                .unwrap(),
            b"1.24"
        );
        assert_eq!(
            n.plaintext_from_pg_binary(DET, &enc(1, -2, 0x4000, 8, &[1]))
                .unwrap(),
            b"0.00",
            "-0.00000001 rounds to an unsigned zero"
        );
        // Non-canonical input (leading and trailing zero groups) is still the same value.
        assert_eq!(
            n.plaintext_from_pg_binary(DET, &enc(4, 2, 0, 2, &[0, 1, 2345, 0]))
                .unwrap(),
            b"12345.00"
        );
        for (bad, what) in [
            (enc(0, 0, 0xC000, 0, &[]), "NaN"),
            (enc(0, 0, 0xD000, 0, &[]), "infinity"),
            (enc(1, 0, 0x1234, 0, &[1]), "sign"),
            (enc(1, 0, 0, 0, &[10000]), "digit"),
            (enc(1, 0, 0, -1, &[1]), "scale"),
            (enc(-1, 0, 0, 0, &[]), "negative"),
            (enc(2, 0, 0, 0, &[1]), "bytes"),
            (vec![0, 0, 0], "bytes"),
            (enc(1, 3, 0, 0, &[1]), "overflow"),
        ] {
            let e = n
                .plaintext_from_pg_binary(DET, &bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn binary_formats() {
        let cases: Vec<(LogicalType, &str, Vec<u8>)> = vec![
            (t("text"), "héllo", "héllo".as_bytes().to_vec()),
            (t("varchar(8)"), "a b ", b"a b ".to_vec()),
            (t("char(4)"), "ab  ", b"ab  ".to_vec()),
            (t("int2"), "-2", (-2i16).to_be_bytes().to_vec()),
            (t("int4"), "70000", 70_000i32.to_be_bytes().to_vec()),
            (
                t("int8"),
                "-5000000000",
                (-5_000_000_000i64).to_be_bytes().to_vec(),
            ),
            (t("date"), "2000-01-01", 0i32.to_be_bytes().to_vec()),
            (t("date"), "1999-12-31", (-1i32).to_be_bytes().to_vec()),
            (t("date"), "2024-02-29", 8825i32.to_be_bytes().to_vec()),
            (
                t("timestamp"),
                "2000-01-01 00:00:01.5",
                1_500_000i64.to_be_bytes().to_vec(),
            ),
            (
                t("timestamp"),
                "1970-01-01 00:00:00",
                (-946_684_800_000_000i64).to_be_bytes().to_vec(),
            ),
        ];
        for (ty, text, binary) in &cases {
            for mode in MODES {
                if mode == OPE && ty.ordered_kind().is_none() {
                    continue;
                }
                let p = ty.plaintext_from_pg_binary(mode, binary).unwrap();
                assert_eq!(
                    p,
                    ty.plaintext_from_text(mode, text.as_bytes()).unwrap(),
                    "{ty:?} {text}"
                );
                assert_eq!(&ty.plaintext_to_pg_binary(mode, &p).unwrap(), binary);
                assert_eq!(ty.plaintext_to_text(mode, &p).unwrap(), text.as_bytes());
            }
        }
        // Integers of another width are accepted and range-checked.
        assert_eq!(
            LogicalType::Int4
                .plaintext_from_pg_binary(DET, &7i64.to_be_bytes())
                .unwrap(),
            b"7"
        );
        let e = LogicalType::Int2
            .plaintext_from_pg_binary(DET, &70_000i32.to_be_bytes())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "value \"70000\" is out of range for type smallint"
        );
        let e = LogicalType::Int4
            .plaintext_from_pg_binary(DET, b"123")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid binary value for type integer: 3 bytes, expected 4"
        );
        assert!(
            LogicalType::Date
                .plaintext_from_pg_binary(DET, &i32::MAX.to_be_bytes())
                .is_err(),
            "infinity"
        );
        assert!(
            LogicalType::Timestamp
                .plaintext_from_pg_binary(DET, &i64::MIN.to_be_bytes())
                .is_err(),
            "-infinity"
        );
        assert!(
            t("varchar(2)")
                .plaintext_from_pg_binary(DET, b"abc")
                .is_err()
        );
    }

    #[test]
    fn ope_plaintexts_are_checked_on_the_way_out() {
        let e = LogicalType::Int2
            .plaintext_to_text(OPE, &40_000i64.to_be_bytes())
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(
            LogicalType::Int4
                .plaintext_to_text(OPE, b"1234567")
                .is_err()
        );
        assert!(
            t("numeric(3,1)")
                .plaintext_to_text(OPE, &1000i64.to_be_bytes())
                .unwrap_err()
                .to_string()
                .starts_with("numeric field overflow")
        );
        assert!(
            LogicalType::Date
                .plaintext_to_text(OPE, &i64::MAX.to_be_bytes())
                .is_err()
        );
    }

    #[test]
    fn ope_plaintexts_keep_order() {
        let cases: [(LogicalType, &[&str]); 4] = [
            (
                LogicalType::Int4,
                &["-2147483648", "-5", "0", "7", "2147483647"],
            ),
            (
                t("numeric(12,2)"),
                &["-100.5", "-0.01", "0", "0.01", "1.5", "10"],
            ),
            (
                LogicalType::Date,
                &["0001-01-01", "1969-12-31", "2024-02-29", "9999-12-31"],
            ),
            (
                LogicalType::Timestamp,
                &[
                    "1969-12-31 23:59:59.999999",
                    "1970-01-01",
                    "2024-01-01 00:00:00.000001",
                ],
            ),
        ];
        for (ty, values) in cases {
            let plaintexts: Vec<i64> = values
                .iter()
                .map(|v| {
                    let p = ty.plaintext_from_text(OPE, v.as_bytes()).unwrap();
                    i64::from_be_bytes(p.try_into().unwrap())
                })
                .collect();
            assert!(plaintexts.windows(2).all(|w| w[0] < w[1]), "{ty:?}");
        }
    }

    #[test]
    fn decimal_text_for_messages() {
        let d = Digits::parse("-0.00125").unwrap();
        assert_eq!(d.to_text(), "-0.00125");
        assert_eq!(Digits::parse("1200").unwrap().to_text(), "1200");
        assert_eq!(Digits::parse("12.5e1").unwrap().to_text(), "125");
        assert_eq!(Digits::parse("000").unwrap().to_text(), "0");
        assert_eq!(Digits::parse("1e50").unwrap().to_text(), "0.1e51");
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            for ty in all_types() {
                for mode in MODES {
                    let _ = ty.plaintext_from_text(mode, &bytes);
                    let _ = ty.plaintext_from_pg_binary(mode, &bytes);
                    let _ = ty.plaintext_to_text(mode, &bytes);
                    let _ = ty.plaintext_to_pg_binary(mode, &bytes);
                }
            }
        }

        #[test]
        fn numeric_binary_headers_never_panic(
            ndigits in -2i16..6,
            weight in any::<i16>(),
            sign in prop::sample::select(vec![0u16, 0x4000, 0xC000, 0xD000, 1]),
            dscale in -1i16..40,
            digits in proptest::collection::vec(any::<i16>(), 0..6),
        ) {
            let mut b = Vec::new();
            for x in [ndigits, weight, sign as i16, dscale] {
                b.extend_from_slice(&x.to_be_bytes());
            }
            for d in digits {
                b.extend_from_slice(&d.to_be_bytes());
            }
            for ty in all_types() {
                let _ = ty.plaintext_from_pg_binary(DET, &b);
            }
        }

        #[test]
        fn text_like_input_never_panics(s in "[-+ 0-9.eE:TZ]{0,32}") {
            for ty in all_types() {
                for mode in MODES {
                    if let Ok(p) = ty.plaintext_from_text(mode, s.as_bytes()) {
                        // Whatever is accepted reads back, and is canonical.
                        let text = ty.plaintext_to_text(mode, &p).unwrap();
                        prop_assert_eq!(ty.plaintext_from_text(mode, &text).unwrap(), p.clone());
                        let binary = ty.plaintext_to_pg_binary(mode, &p).unwrap();
                        prop_assert_eq!(ty.plaintext_from_pg_binary(mode, &binary).unwrap(), p);
                    }
                }
            }
        }

        #[test]
        fn numeric_round_trips(v in -999_999_999_999i64..=999_999_999_999, scale in 0u8..=6) {
            let ty = LogicalType::Numeric { precision: 12, scale };
            for mode in MODES {
                let p = ty.plaintext_from_pg_binary(
                    mode, &encode_pg_numeric(v, scale)).unwrap();
                let text = ty.plaintext_to_text(mode, &p).unwrap();
                prop_assert_eq!(
                    String::from_utf8(text).unwrap(),
                    OrderedKind::Decimal { scale }.format(v)
                );
                prop_assert_eq!(ty.plaintext_to_pg_binary(mode, &p).unwrap(), encode_pg_numeric(v, scale));
            }
        }

        #[test]
        fn timestamps_round_trip(micros in (MIN_DAY * MICROS_PER_DAY)..((MAX_DAY + 1) * MICROS_PER_DAY)) {
            let ty = LogicalType::Timestamp;
            let text = OrderedKind::Timestamp.format(micros);
            for mode in MODES {
                let p = ty.plaintext_from_text(mode, text.as_bytes()).unwrap();
                prop_assert_eq!(ty.plaintext_to_text(mode, &p).unwrap(), text.as_bytes());
                let b = ty.plaintext_to_pg_binary(mode, &p).unwrap();
                prop_assert_eq!(ty.plaintext_from_pg_binary(mode, &b).unwrap(), p);
            }
        }
    }
}
