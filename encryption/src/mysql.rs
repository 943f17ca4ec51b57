//! The MySQL / MariaDB wire forms of the logical types: how an encrypted column is described
//! to the application (column definition type, length, decimals, charset), the text MariaDB
//! would print for a value, the binary protocol's encoding of a value (prepared statement
//! results), and the text of a bound parameter of any binary protocol type.
//!
//! The logical codecs ([`crate::logical`]) speak PostgreSQL's text format; the differences that
//! matter for MySQL are small and handled here: `CHAR(n)` values come back without the padding
//! (MySQL strips trailing spaces unless `PAD_CHAR_TO_FULL_LENGTH`), and `DATETIME` fractions
//! are printed with all six digits (what a `DATETIME(6)` column prints).

use crate::logical::LogicalType;

/// MySQL column type codes used for logical types and stored values.
pub mod types {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const VARCHAR: u8 = 15;
    pub const NEWDECIMAL: u8 = 246;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
}

/// The `binary` character set (collation id 63): bytes, not characters.
pub const BINARY_CHARSET: u16 = 63;

/// Column definition flags warden changes.
pub mod flags {
    pub const BLOB: u16 = 16;
    pub const UNSIGNED: u16 = 32;
    pub const BINARY: u16 = 128;
    pub const NUM: u16 = 32768;
}

/// How a column of a logical type is described in a column definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    pub type_code: u8,
    /// The column length (in bytes of the result character set for strings).
    pub length: u32,
    pub decimals: u8,
    /// Numbers and dates are described with the binary charset, strings with the session's.
    pub binary_charset: bool,
    /// Flags to add (`BLOB` for TEXT, `NUM` for numbers).
    pub flags: u16,
}

/// The column definition of a logical type (`max_char_bytes`: bytes per character of the
/// session's result character set, 4 for utf8mb4).
pub fn column_type(logical: LogicalType, max_char_bytes: u32) -> ColumnType {
    let string = |type_code: u8, chars: u32, flags: u16| ColumnType {
        type_code,
        length: chars.saturating_mul(max_char_bytes),
        decimals: 0,
        binary_charset: false,
        flags,
    };
    let number = |type_code: u8, length: u32, decimals: u8| ColumnType {
        type_code,
        length,
        decimals,
        binary_charset: true,
        flags: flags::NUM | flags::BINARY,
    };
    match logical {
        LogicalType::Text => string(types::BLOB, 65_535, flags::BLOB),
        LogicalType::Varchar(n) => string(types::VAR_STRING, n.unwrap_or(65_535), 0),
        LogicalType::Char(n) => string(types::STRING, n, 0),
        LogicalType::Int2 => number(types::SHORT, 6, 0),
        LogicalType::Int4 => number(types::LONG, 11, 0),
        LogicalType::Int8 => number(types::LONGLONG, 20, 0),
        LogicalType::Numeric { precision, scale } => number(
            types::NEWDECIMAL,
            u32::from(precision) + u32::from(scale > 0) + 1,
            scale,
        ),
        LogicalType::Date => ColumnType {
            type_code: types::DATE,
            length: 10,
            decimals: 0,
            binary_charset: true,
            flags: flags::BINARY,
        },
        LogicalType::Timestamp => ColumnType {
            type_code: types::DATETIME,
            length: 26,
            decimals: 6,
            binary_charset: true,
            flags: flags::BINARY,
        },
    }
}

/// Whether a column of type `type_code` and charset `charset` holds bytes that can be the
/// stored form of an encrypted column of `storage`: VARBINARY / BINARY / BLOB for binary
/// storage, any string for text storage.
pub fn holds_storage(binary_storage: bool, type_code: u8, charset: u16) -> bool {
    let string = matches!(
        type_code,
        types::VARCHAR
            | types::VAR_STRING
            | types::STRING
            | types::TINY_BLOB
            | types::MEDIUM_BLOB
            | types::LONG_BLOB
            | types::BLOB
    );
    string && (!binary_storage || charset == BINARY_CHARSET)
}

/// MariaDB's text for a value, from the logical type's text (PostgreSQL's form).
pub fn text_from_logical(logical: LogicalType, mut text: Vec<u8>) -> Vec<u8> {
    match logical {
        LogicalType::Char(_) => {
            while text.last() == Some(&b' ') {
                text.pop();
            }
            text
        }
        LogicalType::Timestamp => match text.iter().position(|&b| b == b'.') {
            Some(dot) => {
                let digits = text.len() - dot - 1;
                text.extend(std::iter::repeat_n(b'0', 6usize.saturating_sub(digits)));
                text
            }
            None => text,
        },
        _ => text,
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `YYYY-MM-DD` → (year, month, day).
fn split_date(s: &[u8]) -> Option<(u16, u8, u8)> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    Some((
        u16::try_from(digits(&s[..4])?).ok()?,
        u8::try_from(digits(&s[5..7])?).ok()?,
        u8::try_from(digits(&s[8..10])?).ok()?,
    ))
}

/// A value in the binary protocol's encoding for the logical type's column definition (see
/// [`column_type`]), from MariaDB's text of it ([`text_from_logical`]). Strings and decimals
/// are length-encoded strings, integers little-endian, dates and datetimes MySQL's
/// length-prefixed temporal form.
pub fn binary_from_text(logical: LogicalType, text: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || {
        format!(
            "cannot encode {:?} as {}",
            String::from_utf8_lossy(text),
            logical.sql_name()
        )
    };
    let int = || -> Result<i64, String> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    Ok(match logical {
        LogicalType::Text
        | LogicalType::Varchar(_)
        | LogicalType::Char(_)
        | LogicalType::Numeric { .. } => lenenc_bytes(text),
        LogicalType::Int2 => (i16::try_from(int()?).map_err(|_| bad())?)
            .to_le_bytes()
            .to_vec(),
        LogicalType::Int4 => (i32::try_from(int()?).map_err(|_| bad())?)
            .to_le_bytes()
            .to_vec(),
        LogicalType::Int8 => int()?.to_le_bytes().to_vec(),
        LogicalType::Date => {
            let (y, m, d) = split_date(text).ok_or_else(bad)?;
            let mut out = vec![4];
            out.extend_from_slice(&y.to_le_bytes());
            out.extend_from_slice(&[m, d]);
            out
        }
        LogicalType::Timestamp => {
            if text.len() < 19 || text[10] != b' ' || text[13] != b':' || text[16] != b':' {
                return Err(bad());
            }
            let (y, m, d) = split_date(&text[..10]).ok_or_else(bad)?;
            let part = |r: std::ops::Range<usize>| -> Result<u8, String> {
                digits(&text[r])
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(bad)
            };
            let (h, mi, s) = (part(11..13)?, part(14..16)?, part(17..19)?);
            let micros = match text.get(19) {
                None => 0,
                Some(b'.') => {
                    let f = &text[20..];
                    if f.is_empty() || f.len() > 6 {
                        return Err(bad());
                    }
                    digits(f).ok_or_else(bad)? * 10u32.pow(6 - f.len() as u32)
                }
                Some(_) => return Err(bad()),
            };
            let mut out = vec![if micros == 0 { 7 } else { 11 }];
            out.extend_from_slice(&y.to_le_bytes());
            out.extend_from_slice(&[m, d, h, mi, s]);
            if micros != 0 {
                out.extend_from_slice(&micros.to_le_bytes());
            }
            out
        }
    })
}

/// A length-encoded string.
pub fn lenenc_bytes(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 9);
    let n = v.len() as u64;
    match n {
        0..=0xfa => out.push(n as u8),
        0xfb..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out.extend_from_slice(v);
    out
}

/// The text of a bound parameter (COM_STMT_EXECUTE) of binary protocol type `kind`, for a
/// column of type `logical`: integers and floats printed, strings and decimals as sent, dates
/// and datetimes as `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` (a DATETIME at midnight bound to a DATE
/// column is the date).
pub fn param_text(
    logical: LogicalType,
    kind: u8,
    unsigned: bool,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let fixed = |n: usize| -> Result<&[u8], String> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(format!(
                "a parameter of type {kind} has {} bytes, expected {n}",
                bytes.len()
            ))
        }
    };
    let text = match kind {
        types::TINY => {
            let b = fixed(1)?[0];
            if unsigned {
                b.to_string()
            } else {
                (b as i8).to_string()
            }
        }
        types::SHORT | types::YEAR => {
            let b = fixed(2)?;
            let v = [b[0], b[1]];
            if unsigned {
                u16::from_le_bytes(v).to_string()
            } else {
                i16::from_le_bytes(v).to_string()
            }
        }
        types::LONG | types::INT24 => {
            let b = fixed(4)?;
            let v = [b[0], b[1], b[2], b[3]];
            if unsigned {
                u32::from_le_bytes(v).to_string()
            } else {
                i32::from_le_bytes(v).to_string()
            }
        }
        types::LONGLONG => {
            let b: [u8; 8] = fixed(8)?.try_into().map_err(|_| "short LONGLONG")?;
            if unsigned {
                u64::from_le_bytes(b).to_string()
            } else {
                i64::from_le_bytes(b).to_string()
            }
        }
        types::FLOAT => {
            let b: [u8; 4] = fixed(4)?.try_into().map_err(|_| "short FLOAT")?;
            f32::from_le_bytes(b).to_string()
        }
        types::DOUBLE => {
            let b: [u8; 8] = fixed(8)?.try_into().map_err(|_| "short DOUBLE")?;
            f64::from_le_bytes(b).to_string()
        }
        types::DATE | types::DATETIME | types::TIMESTAMP => {
            let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut us) =
                (0u16, 0u8, 0u8, 0u8, 0u8, 0u8, 0u32);
            if bytes.len() >= 4 {
                y = u16::from_le_bytes([bytes[0], bytes[1]]);
                mo = bytes[2];
                d = bytes[3];
            }
            if bytes.len() >= 7 {
                h = bytes[4];
                mi = bytes[5];
                s = bytes[6];
            }
            if bytes.len() >= 11 {
                us = u32::from_le_bytes([bytes[7], bytes[8], bytes[9], bytes[10]]);
            }
            if !matches!(bytes.len(), 0 | 4 | 7 | 11) {
                return Err(format!("a temporal parameter of {} bytes", bytes.len()));
            }
            let date = format!("{y:04}-{mo:02}-{d:02}");
            let midnight = h == 0 && mi == 0 && s == 0 && us == 0;
            if logical == LogicalType::Date && midnight || kind == types::DATE {
                date
            } else if us == 0 {
                format!("{date} {h:02}:{mi:02}:{s:02}")
            } else {
                format!("{date} {h:02}:{mi:02}:{s:02}.{us:06}")
            }
        }
        types::TIME => {
            return Err("a TIME value cannot be written into an encrypted column".into());
        }
        types::DECIMAL
        | types::NEWDECIMAL
        | types::VARCHAR
        | types::VAR_STRING
        | types::STRING
        | types::TINY_BLOB
        | types::MEDIUM_BLOB
        | types::LONG_BLOB
        | types::BLOB => return Ok(bytes.to_vec()),
        other => {
            return Err(format!(
                "a parameter of MySQL type {other} cannot be written into an encrypted column"
            ));
        }
    };
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> LogicalType {
        LogicalType::parse(s).unwrap()
    }

    #[test]
    fn texts_are_what_mariadb_prints() {
        assert_eq!(text_from_logical(t("char(4)"), b"ab  ".to_vec()), b"ab");
        assert_eq!(
            text_from_logical(t("datetime"), b"2024-01-02 03:04:05.5".to_vec()),
            b"2024-01-02 03:04:05.500000"
        );
        assert_eq!(
            text_from_logical(t("datetime"), b"2024-01-02 03:04:05".to_vec()),
            b"2024-01-02 03:04:05"
        );
        assert_eq!(
            text_from_logical(t("decimal(12,2)"), b"1.50".to_vec()),
            b"1.50"
        );
    }

    #[test]
    fn binary_values_follow_the_column_definition() {
        assert_eq!(
            binary_from_text(t("int"), b"-2").unwrap(),
            (-2i32).to_le_bytes()
        );
        assert_eq!(
            binary_from_text(t("bigint"), b"7").unwrap(),
            7i64.to_le_bytes()
        );
        assert_eq!(
            binary_from_text(t("varchar(3)"), b"abc").unwrap(),
            b"\x03abc"
        );
        assert_eq!(
            binary_from_text(t("date"), b"2024-02-29").unwrap(),
            [4, 0xe8, 0x07, 2, 29]
        );
        assert_eq!(
            binary_from_text(t("datetime"), b"2024-02-29 01:02:03").unwrap(),
            [7, 0xe8, 0x07, 2, 29, 1, 2, 3]
        );
        assert_eq!(
            binary_from_text(t("datetime"), b"2024-02-29 01:02:03.000500").unwrap(),
            [11, 0xe8, 0x07, 2, 29, 1, 2, 3, 0xf4, 1, 0, 0]
        );
        assert!(binary_from_text(t("int"), b"x").is_err());
        assert_eq!(column_type(t("decimal(12,2)"), 4).length, 14);
        assert_eq!(column_type(t("varchar(18)"), 4).length, 72);
    }

    #[test]
    fn parameters_become_text() {
        let date = t("date");
        assert_eq!(
            param_text(date, types::LONGLONG, false, &(-5i64).to_le_bytes()).unwrap(),
            b"-5"
        );
        assert_eq!(param_text(date, types::TINY, true, &[200]).unwrap(), b"200");
        assert_eq!(
            param_text(date, types::DATETIME, false, &[0xe8, 0x07, 2, 29, 0, 0, 0]).unwrap(),
            b"2024-02-29"
        );
        assert_eq!(
            param_text(
                t("datetime"),
                types::DATETIME,
                false,
                &[0xe8, 0x07, 2, 29, 1, 2, 3]
            )
            .unwrap(),
            b"2024-02-29 01:02:03"
        );
        assert_eq!(
            param_text(date, types::DOUBLE, false, &1.5f64.to_le_bytes()).unwrap(),
            b"1.5"
        );
        assert_eq!(
            param_text(date, types::VAR_STRING, false, b"abc").unwrap(),
            b"abc"
        );
        assert!(param_text(date, types::TIME, false, &[]).is_err());
        assert!(param_text(date, types::LONG, false, &[1]).is_err());
    }

    #[test]
    fn storage_columns_are_recognised() {
        assert!(holds_storage(true, types::VAR_STRING, BINARY_CHARSET));
        assert!(holds_storage(true, types::BLOB, BINARY_CHARSET));
        assert!(!holds_storage(true, types::VAR_STRING, 45));
        assert!(holds_storage(false, types::BLOB, 45));
        assert!(!holds_storage(false, types::LONG, BINARY_CHARSET));
    }
}
