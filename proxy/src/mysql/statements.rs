//! The client's prepared statements, as warden tracks them: the analysis of their SQL, how
//! many parameters and columns they have, the parameter types the client last bound (a
//! COM_STMT_EXECUTE may omit them and reuse the previous ones), and which parameters were
//! sent as long data (COM_STMT_SEND_LONG_DATA; their values are not in the execute packet).
//!
//! [`decode_execute`] reads a COM_STMT_EXECUTE's parameters with that state, checking every
//! length: binary values are what a later rewrite (encryption of bound values) works on.

use std::collections::HashMap;
use std::sync::Arc;

use warden_analysis::Analysis;

use super::codec::{DecodeError, Reader, malformed};

/// Statements a session may hold at once, as in MySQL's `max_prepared_stmt_count` default.
pub const MAX_STATEMENTS: usize = 16_382;

/// The statement id MariaDB clients use for "the statement prepared last" (pipelined
/// prepare-and-execute).
pub const LAST_PREPARED: u32 = u32::MAX;

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub analysis: Arc<Analysis>,
    pub params: u16,
    pub columns: u16,
    /// `(type, flags)` of each parameter as last bound; empty until the first execute binds.
    pub types: Vec<(u8, u8)>,
    /// Parameters sent with COM_STMT_SEND_LONG_DATA since the last execute or reset.
    pub long_data: Vec<bool>,
    pub rewritten_by: Option<String>,
    /// Whether executing it may change the session's `sql_mode` or character set.
    pub changes_lexing: bool,
    /// The encryption plan of its SQL, when it touches encrypted columns.
    pub plan: Option<Arc<warden_encryption::Plan>>,
    /// How rows fetched from its open cursor (COM_STMT_FETCH) are decrypted.
    pub cursor: Option<Arc<super::session::crypt::ResultCrypt>>,
}

/// The session's prepared statements by id.
#[derive(Default)]
pub struct Statements {
    by_id: HashMap<u32, Prepared>,
    last: Option<u32>,
}

impl Statements {
    pub fn insert(&mut self, id: u32, statement: Prepared) -> bool {
        if self.by_id.len() >= MAX_STATEMENTS && !self.by_id.contains_key(&id) {
            return false;
        }
        self.by_id.insert(id, statement);
        self.last = Some(id);
        true
    }

    fn resolve(&self, id: u32) -> u32 {
        match (id, self.last) {
            (LAST_PREPARED, Some(last)) => last,
            _ => id,
        }
    }

    pub fn get(&self, id: u32) -> Option<&Prepared> {
        self.by_id.get(&self.resolve(id))
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Prepared> {
        let id = self.resolve(id);
        self.by_id.get_mut(&id)
    }

    pub fn remove(&mut self, id: u32) {
        let id = self.resolve(id);
        self.by_id.remove(&id);
    }

    pub fn clear(&mut self) {
        self.by_id.clear();
        self.last = None;
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// One bound parameter of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param<'a> {
    Null,
    /// Sent earlier with COM_STMT_SEND_LONG_DATA.
    LongData,
    /// The value in the binary protocol's encoding for `kind`.
    Value {
        kind: u8,
        unsigned: bool,
        bytes: &'a [u8],
    },
}

/// A decoded COM_STMT_EXECUTE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute<'a> {
    pub statement: u32,
    pub flags: u8,
    pub params: Vec<Param<'a>>,
}

/// The statement id of a COM_STMT_EXECUTE / SEND_LONG_DATA / CLOSE / RESET / FETCH.
pub fn statement_id(payload: &[u8]) -> Result<u32, DecodeError> {
    let mut r = Reader::new(payload);
    r.u8("command")?;
    r.u32("statement id")
}

/// Reads a COM_STMT_EXECUTE for `statement`, and records the parameter types it binds.
pub fn decode_execute<'a>(
    payload: &'a [u8],
    statement: &mut Prepared,
) -> Result<Execute<'a>, DecodeError> {
    let mut r = Reader::new(payload);
    r.u8("command")?;
    let id = r.u32("statement id")?;
    let flags = r.u8("flags")?;
    r.u32("iteration count")?;
    let n = usize::from(statement.params);
    let mut params = Vec::with_capacity(n);
    if n > 0 {
        let bitmap = r.take(n.div_ceil(8), "NULL bitmap")?;
        let bound = r.u8("new-params-bound flag")?;
        if bound == 1 {
            let mut types = Vec::with_capacity(n);
            for _ in 0..n {
                types.push((r.u8("parameter type")?, r.u8("parameter flags")?));
            }
            statement.types = types;
        } else if statement.types.len() != n {
            return Err(malformed(
                "an execute without parameter types for a statement never bound before",
            ));
        }
        statement.long_data.resize(n, false);
        for i in 0..n {
            if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                params.push(Param::Null);
                continue;
            }
            if statement.long_data[i] {
                params.push(Param::LongData);
                continue;
            }
            let (kind, flag) = statement.types[i];
            let bytes = binary_value(&mut r, kind)?;
            params.push(Param::Value {
                kind,
                unsigned: flag & 0x80 != 0,
                bytes,
            });
        }
        statement.long_data.iter_mut().for_each(|l| *l = false);
    }
    Ok(Execute {
        statement: id,
        flags,
        params,
    })
}

/// One value in the binary protocol's encoding for column type `kind`.
pub fn binary_value<'a>(r: &mut Reader<'a>, kind: u8) -> Result<&'a [u8], DecodeError> {
    match kind {
        // NULL
        6 => Ok(&[]),
        // TINY
        1 => r.take(1, "TINY value"),
        // SHORT, YEAR
        2 | 13 => r.take(2, "SHORT value"),
        // LONG, INT24, FLOAT
        3 | 9 | 4 => r.take(4, "LONG value"),
        // DOUBLE, LONGLONG
        5 | 8 => r.take(8, "LONGLONG value"),
        // TIMESTAMP, DATE, TIME, DATETIME (and their fractional variants): a length byte
        7 | 10 | 11 | 12 | 17 | 18 | 19 => {
            let n = r.u8("temporal length")?;
            r.take(usize::from(n), "temporal value")
        }
        // DECIMAL, VARCHAR, BIT, JSON, NEWDECIMAL, ENUM, SET, the BLOBs, VAR_STRING, STRING,
        // GEOMETRY: length-encoded strings
        0 | 15 | 16 | 245..=255 => r.lenenc_bytes("string value"),
        other => Err(malformed(format!("unknown parameter type {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::codec::Writer;
    use proptest::prelude::*;

    fn statement(params: u16) -> Prepared {
        Prepared {
            analysis: warden_analysis::Analyzer::new(
                warden_analysis::Dialect::MYSQL_DEFAULT,
                10,
                1000,
            )
            .analyze("SELECT ?"),
            params,
            columns: 1,
            types: vec![],
            long_data: vec![],
            rewritten_by: None,
            changes_lexing: false,
            plan: None,
            cursor: None,
        }
    }

    fn execute(
        id: u32,
        params: usize,
        nulls: u8,
        types: Option<&[(u8, u8)]>,
        values: &[u8],
    ) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(0x17).u32(id).u8(0).u32(1);
        if params > 0 {
            w.u8(nulls);
            match types {
                Some(t) => {
                    w.u8(1);
                    for (k, f) in t {
                        w.u8(*k).u8(*f);
                    }
                }
                None => {
                    w.u8(0);
                }
            }
            w.bytes(values);
        }
        w.finish()
    }

    #[test]
    fn types_are_cached_across_executes_and_nulls_skip_values() {
        let mut s = statement(3);
        let mut values = Writer::new();
        values.u32(7).lenenc_bytes(b"abc");
        let first = execute(
            1,
            3,
            0b010,
            Some(&[(3, 0), (8, 0x80), (253, 0)]),
            &values.buf,
        );
        let e = decode_execute(&first, &mut s).unwrap();
        assert_eq!(
            e.params,
            vec![
                Param::Value {
                    kind: 3,
                    unsigned: false,
                    bytes: &7u32.to_le_bytes()
                },
                Param::Null,
                Param::Value {
                    kind: 253,
                    unsigned: false,
                    bytes: b"abc"
                },
            ]
        );
        // The second execute omits the types: the cached ones decode it.
        let mut values = Writer::new();
        values.u32(9).u64_for_test(5).lenenc_bytes(b"");
        let second = execute(1, 3, 0, None, &values.buf);
        let e = decode_execute(&second, &mut s).unwrap();
        assert_eq!(
            e.params[1],
            Param::Value {
                kind: 8,
                unsigned: true,
                bytes: &5u64.to_le_bytes()
            }
        );
        // Long data is not in the packet.
        s.long_data = vec![false, false, true];
        let mut values = Writer::new();
        values.u32(1).u64_for_test(2);
        let third = execute(1, 3, 0, None, &values.buf);
        assert_eq!(
            decode_execute(&third, &mut s).unwrap().params[2],
            Param::LongData
        );
        assert!(!s.long_data[2], "long data is used up by the execute");
    }

    #[test]
    fn truncated_or_untyped_executes_are_errors() {
        let mut s = statement(1);
        assert!(decode_execute(&execute(1, 1, 0, None, &[]), &mut s).is_err());
        assert!(decode_execute(&execute(1, 1, 0, Some(&[(3, 0)]), &[1, 2]), &mut s).is_err());
        assert!(decode_execute(&execute(1, 1, 0, Some(&[(99, 0)]), &[1]), &mut s).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_executes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0u16..20) {
            let mut s = statement(n);
            let _ = decode_execute(&bytes, &mut s);
        }
    }

    trait U64ForTest {
        fn u64_for_test(&mut self, v: u64) -> &mut Self;
    }
    impl U64ForTest for Writer {
        fn u64_for_test(&mut self, v: u64) -> &mut Self {
            self.bytes(&v.to_le_bytes())
        }
    }
}
