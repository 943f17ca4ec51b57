//! The packets warden decodes or builds: the server's handshake, the client's handshake
//! response (and SSL request), OK, ERR and EOF, and the ERR packets warden sends itself.
//!
//! Decoders borrow from the payload and check every length ([`super::codec::Reader`]); a
//! malformed packet is a [`DecodeError`], never a panic.

use super::codec::{DecodeError, Reader, Writer, malformed};
use super::constants::caps;
use super::packet::Packet;

/// The server's first packet (Protocol::HandshakeV10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: Vec<u8>,
    pub connection_id: u32,
    /// The 20-byte scramble (auth-plugin-data) without its trailing NUL.
    pub scramble: Vec<u8>,
    /// Capabilities, MariaDB's extended ones in the high 32 bits.
    pub capabilities: u64,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: Vec<u8>,
}

impl Handshake {
    pub fn decode(payload: &[u8]) -> Result<Handshake, DecodeError> {
        let mut r = Reader::new(payload);
        let version = r.u8("protocol version")?;
        if version != 10 {
            return Err(malformed(format!(
                "handshake protocol version {version}; only 10 is supported"
            )));
        }
        let server_version = r.nul_terminated("server version")?.to_vec();
        let connection_id = r.u32("connection id")?;
        let mut scramble = r.take(8, "scramble")?.to_vec();
        r.u8("filler")?;
        let mut capabilities = u64::from(r.u16("capabilities")?);
        let (mut charset, mut status, mut auth_plugin) = (0, 0, Vec::new());
        if !r.is_empty() {
            charset = r.u8("character set")?;
            status = r.u16("status")?;
            capabilities |= u64::from(r.u16("capabilities")?) << 16;
            let data_len = r.u8("auth data length")?;
            r.take(6, "reserved")?;
            let extended = r.u32("MariaDB capabilities")?;
            if capabilities & caps::CLIENT_MYSQL == 0 {
                capabilities |= u64::from(extended) << 32;
            }
            if capabilities & caps::SECURE_CONNECTION != 0 {
                let n = (usize::from(data_len).saturating_sub(8)).max(13);
                let part = r.take(n.min(r.remaining()), "scramble")?;
                let part = part.strip_suffix(&[0]).unwrap_or(part);
                scramble.extend_from_slice(part);
            }
            if capabilities & caps::PLUGIN_AUTH != 0 {
                auth_plugin = r.nul_bytes().to_vec();
            }
        }
        Ok(Handshake {
            server_version,
            connection_id,
            scramble,
            capabilities,
            charset,
            status,
            auth_plugin,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(10)
            .nul_str(&self.server_version)
            .u32(self.connection_id)
            .bytes(&self.scramble[..8.min(self.scramble.len())])
            .u8(0)
            .u16(self.capabilities as u16)
            .u8(self.charset)
            .u16(self.status)
            .u16((self.capabilities >> 16) as u16)
            .u8((self.scramble.len() + 1) as u8)
            .zeros(6)
            .u32(if self.capabilities & caps::CLIENT_MYSQL == 0 {
                (self.capabilities >> 32) as u32
            } else {
                0
            });
        let part2 = self.scramble.get(8..).unwrap_or_default();
        w.bytes(part2);
        w.zeros(13usize.saturating_sub(part2.len()).max(1));
        w.nul_str(&self.auth_plugin);
        w.finish()
    }
}

/// The client's answer to the handshake (Protocol::HandshakeResponse41), or just its first
/// 32 bytes when it is an SSL request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u64,
    pub max_packet: u32,
    pub charset: u8,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<Vec<u8>>,
    /// Connect attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// An SSL request: the client starts TLS next.
    pub ssl_request: bool,
}

impl HandshakeResponse {
    pub fn decode(payload: &[u8]) -> Result<HandshakeResponse, DecodeError> {
        let mut r = Reader::new(payload);
        let mut capabilities = u64::from(r.u32("capabilities")?);
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(malformed(
                "the client uses the pre-4.1 handshake, which warden does not support",
            ));
        }
        let max_packet = r.u32("max packet size")?;
        let charset = r.u8("character set")?;
        r.take(19, "filler")?;
        let extended = r.u32("MariaDB capabilities")?;
        if capabilities & caps::CLIENT_MYSQL == 0 {
            capabilities |= u64::from(extended) << 32;
        }
        let mut out = HandshakeResponse {
            capabilities,
            max_packet,
            charset,
            ..HandshakeResponse::default()
        };
        if r.is_empty() {
            out.ssl_request = true;
            return Ok(out);
        }
        out.user = r.nul_terminated("user name")?.to_vec();
        out.auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
            r.lenenc_bytes("auth response")?.to_vec()
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = r.u8("auth response length")?;
            r.take(usize::from(n), "auth response")?.to_vec()
        } else {
            r.nul_terminated("auth response")?.to_vec()
        };
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            out.database = Some(r.nul_bytes().to_vec());
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            out.auth_plugin = Some(r.nul_bytes().to_vec());
        }
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            out.attributes = decode_attributes(r.lenenc_bytes("connect attributes")?)?;
        }
        Ok(out)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.capabilities as u32)
            .u32(self.max_packet)
            .u8(self.charset)
            .zeros(19)
            .u32(if self.capabilities & caps::CLIENT_MYSQL == 0 {
                (self.capabilities >> 32) as u32
            } else {
                0
            });
        if self.ssl_request {
            return w.finish();
        }
        w.nul_str(&self.user);
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
            w.lenenc_bytes(&self.auth_response);
        } else {
            w.u8(self.auth_response.len() as u8)
                .bytes(&self.auth_response);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            w.nul_str(self.database.as_deref().unwrap_or_default());
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            w.nul_str(self.auth_plugin.as_deref().unwrap_or_default());
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            w.lenenc_bytes(&encode_attributes(&self.attributes));
        }
        w.finish()
    }

    /// The value of connect attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute(&self.attributes, name)
    }
}

/// The value of connect attribute `name` in `attributes`.
pub fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

pub fn decode_attributes(bytes: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        let k = r.lenenc_bytes("attribute name")?;
        let v = r.lenenc_bytes("attribute value")?;
        if out.len() < 256 {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
    }
    Ok(out)
}

pub fn encode_attributes(attributes: &[(String, String)]) -> Vec<u8> {
    let mut w = Writer::new();
    for (k, v) in attributes {
        w.lenenc_bytes(k.as_bytes()).lenenc_bytes(v.as_bytes());
    }
    w.finish()
}

/// COM_CHANGE_USER's payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeUser {
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Vec<u8>,
    pub charset: Option<u16>,
    pub auth_plugin: Option<Vec<u8>>,
    pub attributes: Vec<(String, String)>,
}

impl ChangeUser {
    pub fn decode(payload: &[u8], capabilities: u64) -> Result<ChangeUser, DecodeError> {
        let mut r = Reader::new(payload);
        r.u8("command")?;
        let mut out = ChangeUser {
            user: r.nul_terminated("user name")?.to_vec(),
            ..ChangeUser::default()
        };
        out.auth_response = if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = r.u8("auth response length")?;
            r.take(usize::from(n), "auth response")?.to_vec()
        } else {
            r.nul_terminated("auth response")?.to_vec()
        };
        out.database = r.nul_bytes().to_vec();
        if r.remaining() >= 2 {
            out.charset = Some(r.u16("character set")?);
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            out.auth_plugin = Some(r.nul_bytes().to_vec());
        }
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            out.attributes = decode_attributes(r.lenenc_bytes("connect attributes")?)?;
        }
        Ok(out)
    }
}

/// An OK packet (or an EOF-replacing OK, or an EOF), as far as warden reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub status: u16,
    pub warnings: u16,
}

impl OkPacket {
    /// An OK packet (0x00, or 0xFE ending a result set when DEPRECATE_EOF is on).
    pub fn decode(payload: &[u8]) -> Result<OkPacket, DecodeError> {
        let mut r = Reader::new(payload);
        r.u8("header")?;
        let affected_rows = r.lenenc("affected rows")?;
        r.lenenc("last insert id")?;
        // MySQL 4.1+ always sends status and warnings; be lenient with packets that stop here.
        let status = if r.remaining() >= 2 {
            r.u16("status")?
        } else {
            0
        };
        let warnings = if r.remaining() >= 2 {
            r.u16("warnings")?
        } else {
            0
        };
        Ok(OkPacket {
            affected_rows,
            status,
            warnings,
        })
    }

    /// An EOF packet: 0xFE, warnings, status.
    pub fn decode_eof(payload: &[u8]) -> Result<OkPacket, DecodeError> {
        let mut r = Reader::new(payload);
        r.u8("header")?;
        if r.is_empty() {
            return Ok(OkPacket::default());
        }
        let warnings = r.u16("warnings")?;
        let status = r.u16("status")?;
        Ok(OkPacket {
            affected_rows: 0,
            status,
            warnings,
        })
    }
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

impl ErrPacket {
    pub fn new(code: u16, sqlstate: &str, message: impl Into<String>) -> ErrPacket {
        ErrPacket {
            code,
            sqlstate: sqlstate.to_string(),
            message: message.into(),
        }
    }

    pub fn decode(payload: &[u8]) -> Result<ErrPacket, DecodeError> {
        let mut r = Reader::new(payload);
        if r.u8("header")? != 0xff {
            return Err(malformed("an error packet does not start with 0xFF"));
        }
        let code = r.u16("error code")?;
        let rest = r.rest();
        let (sqlstate, message) = match rest.strip_prefix(b"#") {
            Some(tail) if tail.len() >= 5 => {
                (String::from_utf8_lossy(&tail[..5]).into_owned(), &tail[5..])
            }
            _ => ("HY000".to_string(), rest),
        };
        Ok(ErrPacket {
            code,
            sqlstate,
            message: String::from_utf8_lossy(message).into_owned(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut state = self.sqlstate.as_bytes().to_vec();
        state.resize(5, b'0');
        Writer::new()
            .u8(0xff)
            .u16(self.code)
            .u8(b'#')
            .bytes(&state)
            .bytes(self.message.as_bytes())
            .finish()
    }

    pub fn packet(&self, seq: u8) -> Packet {
        Packet::new(seq, &self.encode())
    }

    /// The error code an audit record shows: the SQLSTATE, as for PostgreSQL (the MySQL error
    /// number goes into the message, see `describe`).
    pub fn audit_code(&self) -> String {
        self.sqlstate.clone()
    }
}

/// An OK packet warden writes itself.
pub fn ok_packet(seq: u8, status: u16) -> Packet {
    Packet::new(
        seq,
        &Writer::new()
            .u8(0)
            .lenenc(0)
            .lenenc(0)
            .u16(status)
            .u16(0)
            .finish(),
    )
}

/// Whether a packet in a result set is its terminator (EOF, or OK with 0xFE when
/// DEPRECATE_EOF is on) rather than a row.
pub fn is_terminator(packet: &Packet, deprecate_eof: bool) -> bool {
    packet.first() == Some(0xfe)
        && if deprecate_eof {
            packet.len < super::packet::MAX_PHYSICAL
        } else {
            packet.len < 9
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_round_trip() {
        let h = Handshake {
            server_version: b"5.5.5-10.11.6-MariaDB".to_vec(),
            connection_id: 42,
            scramble: (1..=20).collect(),
            capabilities: caps::SUPPORTED & !caps::CLIENT_MYSQL | (1 << 34),
            charset: 45,
            status: 2,
            auth_plugin: b"mysql_native_password".to_vec(),
        };
        assert_eq!(Handshake::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn responses_round_trip() {
        let r = HandshakeResponse {
            capabilities: caps::SUPPORTED & !caps::SSL,
            max_packet: 1 << 24,
            charset: 45,
            user: b"app".to_vec(),
            auth_response: vec![9; 20],
            database: Some(b"db".to_vec()),
            auth_plugin: Some(b"mysql_native_password".to_vec()),
            attributes: vec![("_client_name".into(), "libmariadb".into())],
            ssl_request: false,
        };
        let decoded = HandshakeResponse::decode(&r.encode()).unwrap();
        assert_eq!(decoded, r);
        assert_eq!(decoded.attribute("_client_name"), Some("libmariadb"));
        let ssl = HandshakeResponse {
            ssl_request: true,
            ..r.clone()
        };
        assert_eq!(ssl.encode().len(), 32);
        assert!(
            HandshakeResponse::decode(&ssl.encode())
                .unwrap()
                .ssl_request
        );
    }

    #[test]
    fn errors_round_trip_and_bad_packets_fail() {
        let e = ErrPacket::new(1142, "42000", "refused");
        assert_eq!(ErrPacket::decode(&e.encode()).unwrap(), e);
        assert!(Handshake::decode(&[9]).is_err());
        assert!(HandshakeResponse::decode(&[0, 2, 0, 0]).is_err());
        assert!(OkPacket::decode(&[0]).is_err());
    }
}
