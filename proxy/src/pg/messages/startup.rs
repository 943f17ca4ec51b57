//! The untagged messages that open a connection: StartupMessage, SSLRequest,
//! GSSENCRequest and CancelRequest.

use super::{MessageError, Reader};
use crate::pg::frame::Frame;

/// Protocol 3.0, the only major version PostgreSQL speaks.
pub const PROTOCOL_3: i32 = 3 << 16;
pub const SSL_REQUEST: i32 = 80877103;
pub const GSSENC_REQUEST: i32 = 80877104;
pub const CANCEL_REQUEST: i32 = 80877102;

/// The first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// A normal startup: protocol version and parameters (user, database, ...).
    Startup {
        version: i32,
        params: Vec<(String, String)>,
    },
    SslRequest,
    GssEncRequest,
    /// Cancel the query running in the session identified by the key.
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
}

impl StartupPacket {
    pub fn decode(frame: &Frame) -> Result<StartupPacket, MessageError> {
        let mut r = Reader::new(frame.body(), "startup");
        let code = r.i32()?;
        match code {
            SSL_REQUEST => {
                r.finish()?;
                Ok(StartupPacket::SslRequest)
            }
            GSSENC_REQUEST => {
                r.finish()?;
                Ok(StartupPacket::GssEncRequest)
            }
            CANCEL_REQUEST => {
                let pid = r.i32()?;
                let secret = r.rest().to_vec();
                // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
                if secret.len() < 4 || secret.len() > 256 {
                    return Err(MessageError {
                        message: "CancelRequest",
                        problem: "has a secret key of invalid length",
                    });
                }
                Ok(StartupPacket::Cancel { pid, secret })
            }
            version if version >> 16 == 3 => {
                let mut params = Vec::new();
                loop {
                    let name = r.cstr()?;
                    if name.is_empty() {
                        break;
                    }
                    let value = r.cstr()?;
                    if params.iter().any(|(n, _): &(String, String)| n == name) {
                        return Err(MessageError {
                            message: "startup",
                            problem: "repeats a parameter",
                        });
                    }
                    params.push((name.to_string(), value.to_string()));
                }
                r.finish()?;
                Ok(StartupPacket::Startup { version, params })
            }
            _ => Err(MessageError {
                message: "startup",
                problem: "asks for an unsupported protocol version",
            }),
        }
    }
}

/// Encodes a StartupMessage.
pub fn encode_startup(version: i32, params: &[(String, String)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(&version.to_be_bytes());
    for (k, v) in params {
        body.extend(k.bytes().filter(|&b| b != 0));
        body.push(0);
        body.extend(v.bytes().filter(|&b| b != 0));
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Encodes a request code with an optional payload (SSLRequest, CancelRequest).
pub fn encode_request(code: i32, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 8) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn frame(bytes: Vec<u8>) -> Frame {
        Frame {
            tag: 0,
            bytes: Bytes::from(bytes),
        }
    }

    #[test]
    fn startup_round_trips() {
        let params = vec![
            ("user".to_string(), "alice".to_string()),
            ("database".to_string(), "db".to_string()),
        ];
        let p = StartupPacket::decode(&frame(encode_startup(PROTOCOL_3, &params))).unwrap();
        assert_eq!(
            p,
            StartupPacket::Startup {
                version: PROTOCOL_3,
                params
            }
        );
    }

    #[test]
    fn requests_decode() {
        assert_eq!(
            StartupPacket::decode(&frame(encode_request(SSL_REQUEST, &[]))).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            StartupPacket::decode(&frame(encode_request(GSSENC_REQUEST, &[]))).unwrap(),
            StartupPacket::GssEncRequest
        );
        let mut payload = 42i32.to_be_bytes().to_vec();
        payload.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            StartupPacket::decode(&frame(encode_request(CANCEL_REQUEST, &payload))).unwrap(),
            StartupPacket::Cancel {
                pid: 42,
                secret: vec![1, 2, 3, 4]
            }
        );
        assert!(StartupPacket::decode(&frame(encode_request(1234, &[]))).is_err());
        assert!(StartupPacket::decode(&frame(encode_request(SSL_REQUEST, &[0]))).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_startup_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = ((body.len() + 4) as i32).to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let _ = StartupPacket::decode(&frame(bytes));
        }

        #[test]
        fn startup_packets_with_a_valid_prefix_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut body = PROTOCOL_3.to_be_bytes().to_vec();
            body.extend_from_slice(&tail);
            let mut bytes = ((body.len() + 4) as i32).to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let _ = StartupPacket::decode(&frame(bytes));
        }
    }
}
