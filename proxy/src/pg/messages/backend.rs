//! Messages a server sends that warden decodes, and the ones warden sends itself.

use super::{MessageBuilder, MessageError, Reader};
use crate::pg::frame::Frame;

/// `R`: an authentication request or result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    /// SASL: the mechanisms the server offers.
    Sasl {
        mechanisms: Vec<&'a str>,
    },
    SaslContinue {
        data: &'a [u8],
    },
    SaslFinal {
        data: &'a [u8],
    },
    /// Kerberos, GSS, SSPI and anything else warden does not speak.
    Other {
        code: i32,
    },
}

pub const AUTH_OK: i32 = 0;
pub const AUTH_CLEARTEXT: i32 = 3;
pub const AUTH_MD5: i32 = 5;
pub const AUTH_SASL: i32 = 10;
pub const AUTH_SASL_CONTINUE: i32 = 11;
pub const AUTH_SASL_FINAL: i32 = 12;

impl<'a> Authentication<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "Authentication");
        let code = r.i32()?;
        let auth = match code {
            AUTH_OK => Authentication::Ok,
            AUTH_CLEARTEXT => Authentication::CleartextPassword,
            AUTH_MD5 => {
                let s = r.bytes(4)?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            AUTH_SASL => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl { mechanisms }
            }
            AUTH_SASL_CONTINUE => Authentication::SaslContinue { data: r.rest() },
            AUTH_SASL_FINAL => Authentication::SaslFinal { data: r.rest() },
            code => Authentication::Other { code },
        };
        if !matches!(auth, Authentication::Other { .. }) {
            r.finish()?;
        }
        Ok(auth)
    }
}

/// Builds an authentication request or result.
pub fn authentication(code: i32, payload: &[u8]) -> Frame {
    MessageBuilder::new(b'R').i32(code).bytes(payload).finish()
}

/// Builds an AuthenticationSASL listing `mechanisms`.
pub fn authentication_sasl(mechanisms: &[&str]) -> Frame {
    let mut b = MessageBuilder::new(b'R').i32(AUTH_SASL);
    for m in mechanisms {
        b = b.cstr(m);
    }
    b.u8(0).finish()
}

/// `S`: a run-time parameter the server reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    pub fn decode(frame: &'a Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "ParameterStatus");
        let name = r.cstr()?;
        let value = r.cstr()?;
        r.finish()?;
        Ok(ParameterStatus { name, value })
    }
}

/// `K`: the key a client uses to cancel its queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    pub pid: i32,
    pub secret: Vec<u8>,
}

impl BackendKeyData {
    pub fn decode(frame: &Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "BackendKeyData");
        let pid = r.i32()?;
        let secret = r.rest().to_vec();
        if secret.len() < 4 || secret.len() > 256 {
            return Err(MessageError {
                message: "BackendKeyData",
                problem: "has a secret key of invalid length",
            });
        }
        Ok(BackendKeyData { pid, secret })
    }

    pub fn encode(&self) -> Frame {
        MessageBuilder::new(b'K')
            .i32(self.pid)
            .bytes(&self.secret)
            .finish()
    }
}

/// `Z`: the server is ready for a new query; the byte is the transaction status.
pub fn ready_for_query_status(frame: &Frame) -> Result<u8, MessageError> {
    let mut r = Reader::new(frame.body(), "ReadyForQuery");
    let status = r.u8()?;
    r.finish()?;
    match status {
        b'I' | b'T' | b'E' => Ok(status),
        _ => Err(MessageError {
            message: "ReadyForQuery",
            problem: "has an unknown transaction status",
        }),
    }
}

/// `C`: a statement finished; the tag says what it did ("INSERT 0 3", "SELECT 5").
pub fn command_tag(frame: &Frame) -> Result<&str, MessageError> {
    let mut r = Reader::new(frame.body(), "CommandComplete");
    let tag = r.cstr()?;
    r.finish()?;
    Ok(tag)
}

/// The row count a command tag reports, when it reports one.
pub fn rows_in_tag(tag: &str) -> Option<u64> {
    let mut words = tag.split(' ');
    let command = words.next()?;
    let last = tag.rsplit(' ').next()?;
    match command {
        "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "MERGE" | "MOVE" | "FETCH" | "COPY" => {
            last.parse().ok()
        }
        _ => None,
    }
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// Localised severity (`S`).
    pub severity: String,
    /// Non-localised severity (`V`): ERROR, FATAL, PANIC, WARNING, NOTICE...
    pub severity_raw: Option<String>,
    /// SQLSTATE (`C`).
    pub code: String,
    /// Primary message (`M`).
    pub message: String,
    /// Optional detail (`D`).
    pub detail: Option<String>,
    /// Optional hint (`H`).
    pub hint: Option<String>,
}

impl ErrorFields {
    pub fn decode(frame: &Frame) -> Result<Self, MessageError> {
        let mut r = Reader::new(frame.body(), "ErrorResponse");
        let mut fields = ErrorFields::default();
        loop {
            let kind = r.u8()?;
            if kind == 0 {
                break;
            }
            let value = String::from_utf8_lossy(r.cstr_bytes()?).into_owned();
            match kind {
                b'S' => fields.severity = value,
                b'V' => fields.severity_raw = Some(value),
                b'C' => fields.code = value,
                b'M' => fields.message = value,
                b'D' => fields.detail = Some(value),
                b'H' => fields.hint = Some(value),
                _ => {}
            }
        }
        r.finish()?;
        Ok(fields)
    }

    /// Whether the server will close the connection after this error.
    pub fn is_fatal(&self) -> bool {
        let s = self.severity_raw.as_deref().unwrap_or(&self.severity);
        s == "FATAL" || s == "PANIC"
    }

    /// An ERROR with `code` and `message`.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            severity: "ERROR".into(),
            severity_raw: Some("ERROR".into()),
            code: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// A FATAL error with `code` and `message`: the connection closes after it.
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self {
            severity: "FATAL".into(),
            severity_raw: Some("FATAL".into()),
            ..Self::error(code, message)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn encode_as(&self, tag: u8) -> Frame {
        let mut b = MessageBuilder::new(tag).u8(b'S').cstr(&self.severity);
        if let Some(v) = &self.severity_raw {
            b = b.u8(b'V').cstr(v);
        }
        b = b.u8(b'C').cstr(&self.code).u8(b'M').cstr(&self.message);
        if let Some(d) = &self.detail {
            b = b.u8(b'D').cstr(d);
        }
        if let Some(h) = &self.hint {
            b = b.u8(b'H').cstr(h);
        }
        b.u8(0).finish()
    }

    /// Encodes an ErrorResponse.
    pub fn encode(&self) -> Frame {
        self.encode_as(b'E')
    }
}

/// SQLSTATE codes warden itself uses.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT: &str = "08001";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const INTERNAL_ERROR: &str = "XX000";
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn tags_give_row_counts() {
        assert_eq!(rows_in_tag("INSERT 0 3"), Some(3));
        assert_eq!(rows_in_tag("SELECT 5"), Some(5));
        assert_eq!(rows_in_tag("UPDATE 0"), Some(0));
        assert_eq!(rows_in_tag("COPY 100"), Some(100));
        assert_eq!(rows_in_tag("CREATE TABLE"), None);
        assert_eq!(rows_in_tag("BEGIN"), None);
    }

    #[test]
    fn errors_round_trip() {
        let e = ErrorFields::fatal("28P01", "password authentication failed for user \"a\"")
            .with_hint("check the password");
        let back = ErrorFields::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert!(back.is_fatal());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(tag in prop::sample::select(vec![b'R', b'S', b'K', b'Z', b'C', b'E']), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = vec![tag];
            bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
            bytes.extend_from_slice(&body);
            let frame = Frame { tag, bytes: Bytes::from(bytes) };
            let _ = Authentication::decode(&frame);
            let _ = ParameterStatus::decode(&frame);
            let _ = BackendKeyData::decode(&frame);
            let _ = ready_for_query_status(&frame);
            let _ = command_tag(&frame);
            let _ = ErrorFields::decode(&frame);
        }
    }
}
