//! Messages a client sends after startup that warden decodes or builds.

use super::{MessageBuilder, MessageError, Reader};
use crate::pg::frame::Frame;

/// `Q`: a simple query, possibly several statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// The SQL text as sent, in the client's encoding.
    pub sql: &'a [u8],
}

impl<'a> Query<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "Query");
        let sql = r.cstr_bytes()?;
        r.finish()?;
        Ok(Query { sql })
    }

    pub fn encode(sql: &str) -> Frame {
        MessageBuilder::new(b'Q').cstr(sql).finish()
    }
}

/// `P`: prepare a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a str,
    pub sql: &'a [u8],
    pub param_types: Vec<i32>,
}

impl<'a> Parse<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "Parse");
        let name = r.cstr()?;
        let sql = r.cstr_bytes()?;
        let n = r.count16()?;
        let mut param_types = Vec::with_capacity(n.min(r.remaining() / 4));
        for _ in 0..n {
            param_types.push(r.i32()?);
        }
        r.finish()?;
        Ok(Parse {
            name,
            sql,
            param_types,
        })
    }

    pub fn encode(name: &str, sql: &str, param_types: &[i32]) -> Frame {
        let mut b = MessageBuilder::new(b'P')
            .cstr(name)
            .cstr(sql)
            .i16(param_types.len() as i16);
        for t in param_types {
            b = b.i32(*t);
        }
        b.finish()
    }
}

/// `B`: bind parameters to a prepared statement, creating a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is SQL NULL (never confused with an empty value).
    pub params: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "Bind");
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let nf = r.count16()?;
        let mut param_formats = Vec::with_capacity(nf.min(r.remaining() / 2));
        for _ in 0..nf {
            param_formats.push(r.i16()?);
        }
        let np = r.count16()?;
        let mut params = Vec::with_capacity(np.min(r.remaining() / 4));
        for _ in 0..np {
            let len = r.i32()?;
            if len == -1 {
                params.push(None);
            } else if len < 0 {
                return Err(MessageError {
                    message: "Bind",
                    problem: "has a negative parameter length",
                });
            } else {
                params.push(Some(r.bytes(len as usize)?));
            }
        }
        let nr = r.count16()?;
        let mut result_formats = Vec::with_capacity(nr.min(r.remaining() / 2));
        for _ in 0..nr {
            result_formats.push(r.i16()?);
        }
        r.finish()?;
        if param_formats.len() > 1 && param_formats.len() != params.len() {
            return Err(MessageError {
                message: "Bind",
                problem: "has a parameter format count that matches neither 0, 1 nor the parameters",
            });
        }
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    pub fn encode(&self) -> Frame {
        let mut b = MessageBuilder::new(b'B')
            .cstr(self.portal)
            .cstr(self.statement)
            .i16(self.param_formats.len() as i16);
        for f in &self.param_formats {
            b = b.i16(*f);
        }
        b = b.i16(self.params.len() as i16);
        for p in &self.params {
            b = match p {
                None => b.i32(-1),
                Some(v) => b.i32(v.len() as i32).bytes(v),
            };
        }
        b = b.i16(self.result_formats.len() as i16);
        for f in &self.result_formats {
            b = b.i16(*f);
        }
        b.finish()
    }
}

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

fn target(r: &mut Reader<'_>) -> Result<Target, MessageError> {
    match r.u8()? {
        b'S' => Ok(Target::Statement),
        b'P' => Ok(Target::Portal),
        _ => Err(MessageError {
            message: "Describe/Close",
            problem: "names neither a statement ('S') nor a portal ('P')",
        }),
    }
}

/// `D` (Describe) and `C` (Close) share a body: a target kind and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef<'a> {
    pub target: Target,
    pub name: &'a str,
}

impl<'a> TargetRef<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "Describe/Close");
        let target = target(&mut r)?;
        let name = r.cstr()?;
        r.finish()?;
        Ok(TargetRef { target, name })
    }
}

/// `E`: run a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a str,
    /// Row limit; 0 means all.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "Execute");
        let portal = r.cstr()?;
        let max_rows = r.i32()?;
        r.finish()?;
        Ok(Execute { portal, max_rows })
    }

    pub fn encode(portal: &str, max_rows: i32) -> Frame {
        MessageBuilder::new(b'E')
            .cstr(portal)
            .i32(max_rows)
            .finish()
    }
}

/// `p` during SASL: the client's first message, naming the mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a str,
    pub data: &'a [u8],
}

impl<'a> SaslInitialResponse<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "SASLInitialResponse");
        let mechanism = r.cstr()?;
        let len = r.i32()?;
        let data = if len < 0 {
            &[][..]
        } else {
            r.bytes(len as usize)?
        };
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    pub fn encode(mechanism: &str, data: &[u8]) -> Frame {
        MessageBuilder::new(b'p')
            .cstr(mechanism)
            .i32(data.len() as i32)
            .bytes(data)
            .finish()
    }
}

/// `p` carrying a password hash or a SASL continuation: the body is opaque bytes.
pub fn password_payload(frame: &Frame) -> &[u8] {
    frame.body()
}

/// Builds a `p` message with an md5 password response (NUL-terminated).
pub fn encode_password(password: &str) -> Frame {
    MessageBuilder::new(b'p').cstr(password).finish()
}

/// Builds a `p` message with a SASL continuation.
pub fn encode_sasl_response(data: &[u8]) -> Frame {
    MessageBuilder::new(b'p').bytes(data).finish()
}

/// Builds a Sync.
pub fn sync() -> Frame {
    MessageBuilder::new(b'S').finish()
}

/// Builds a Terminate.
pub fn terminate() -> Frame {
    MessageBuilder::new(b'X').finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn bind_round_trips_and_keeps_null_apart_from_empty() {
        let bind = Bind {
            portal: "p",
            statement: "s",
            param_formats: vec![1],
            params: vec![None, Some(b""), Some(b"42")],
            result_formats: vec![0, 1],
        };
        let frame = bind.encode();
        assert_eq!(Bind::decode(&frame).unwrap(), bind);
    }

    #[test]
    fn parse_round_trips() {
        let frame = Parse::encode("s1", "SELECT $1", &[23]);
        let p = Parse::decode(&frame).unwrap();
        assert_eq!(
            (p.name, p.sql, p.param_types),
            ("s1", &b"SELECT $1"[..], vec![23])
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic(tag in prop::sample::select(vec![b'Q', b'P', b'B', b'D', b'C', b'E', b'p']), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = vec![tag];
            bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
            bytes.extend_from_slice(&body);
            let frame = Frame { tag, bytes: Bytes::from(bytes) };
            let _ = Query::decode(&frame);
            let _ = Parse::decode(&frame);
            let _ = Bind::decode(&frame);
            let _ = TargetRef::decode(&frame);
            let _ = Execute::decode(&frame);
            let _ = SaslInitialResponse::decode(&frame);
        }
    }
}
