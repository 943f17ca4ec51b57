//! Opening a session on the database: TCP, TLS with the configured verification, the startup
//! packet, and authentication with the credential warden recovered from the client.
//!
//! The result is a logged-in connection plus the messages the database sent during startup
//! (ParameterStatus, notices, NegotiateProtocolVersion), which the session relays to the client
//! in order, and the database's cancel key, which warden keeps to itself.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::UpstreamCredential;
use super::auth::scram::{MECHANISM, MECHANISM_PLUS, ScramClient, ScramError, ScramSecret};
use super::frame::{Frame, FrameError, FrameReader, Peer};
use super::messages::backend::{Authentication, BackendKeyData, ErrorFields, ParameterStatus};
use super::messages::frontend::{SaslInitialResponse, encode_password, encode_sasl_response};
use super::messages::startup::{SSL_REQUEST, encode_request, encode_startup};
use crate::config::{ServerAddress, ServerTlsMode};
use crate::net::{Stream, tune};
use crate::tls::{ServerTls, tls_server_end_point};

/// Why warden could not open a session on the database.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the database at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to or logging in at the database at {0}")]
    Timeout(String),
    #[error("the database at {0} does not accept TLS, which the configuration requires")]
    TlsRefused(String),
    #[error("TLS with the database at {address} failed: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    #[error("the database refused the session: {} ({})", .0.message, .0.code)]
    Refused(Box<ErrorFields>, Frame),
    #[error("logging in to the database failed: {0}")]
    Scram(#[from] ScramError),
    #[error("the database asks for {0}, which warden cannot answer for this user")]
    UnsupportedAuth(String),
    #[error("the database broke the protocol during startup: {0}")]
    Protocol(String),
    #[error("the database connection failed during startup: {0}")]
    Frame(#[from] FrameError),
    #[error("i/o error talking to the database: {0}")]
    Io(#[from] std::io::Error),
}

/// A logged-in database session.
pub struct Upstream {
    pub stream: Stream,
    /// Bytes the database sent after ReadyForQuery (normally none).
    pub leftover: BytesMut,
    /// ParameterStatus, NoticeResponse and NegotiateProtocolVersion messages, in order.
    pub startup_messages: Vec<Frame>,
    /// The run-time parameters the database reported.
    pub parameters: Vec<(String, String)>,
    /// The database's own cancel key.
    pub key: Option<BackendKeyData>,
    /// The transaction status in the first ReadyForQuery.
    pub ready_status: u8,
}

/// Where and how to reach a database.
pub struct Target<'a> {
    pub address: &'a ServerAddress,
    pub tls: Option<&'a ServerTls>,
    pub timeout: Duration,
}

impl Target<'_> {
    /// Opens a TCP (and, as configured, TLS) connection, without logging in.
    pub async fn open(&self) -> Result<Stream, UpstreamError> {
        let address = self.address.to_string();
        let tcp = TcpStream::connect((self.address.host.as_str(), self.address.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                address: address.clone(),
                source,
            })?;
        tune(&tcp);
        let Some(tls) = self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let mut tcp = tcp;
        tcp.write_all(&encode_request(SSL_REQUEST, &[])).await?;
        // Exactly one byte: anything the server sends after 'S' before the handshake would be
        // unencrypted data injected into the session (CVE-2021-23214).
        let answer = tcp.read_u8().await?;
        match answer {
            b'S' => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls {
                        address: address.clone(),
                        source,
                    })?;
                Ok(Stream::ClientTls(Box::new(stream)))
            }
            b'N' if tls.mode == ServerTlsMode::Prefer => Ok(Stream::Plain(tcp)),
            b'N' => Err(UpstreamError::TlsRefused(address)),
            other => Err(UpstreamError::Protocol(format!(
                "answered the SSL request with byte 0x{other:02x}"
            ))),
        }
    }

    /// Connects and logs in with `params` (user, database, ...) and `credential`.
    pub async fn connect(
        &self,
        version: i32,
        params: &[(String, String)],
        credential: &UpstreamCredential,
    ) -> Result<Upstream, UpstreamError> {
        let address = self.address.to_string();
        match tokio::time::timeout(self.timeout, async {
            let stream = self.open().await?;
            login(stream, version, params, credential).await
        })
        .await
        {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(address)),
        }
    }
}

async fn login(
    mut stream: Stream,
    version: i32,
    params: &[(String, String)],
    credential: &UpstreamCredential,
) -> Result<Upstream, UpstreamError> {
    stream.write_all(&encode_startup(version, params)).await?;
    stream.flush().await?;
    let channel_binding = stream
        .peer_certificate()
        .and_then(|c| tls_server_end_point(&c));
    let tls = stream.is_tls();
    let mut reader = FrameReader::new(stream, Peer::Server, 1 << 20);
    let mut scram: Option<ScramClient> = None;
    let mut startup_messages = Vec::new();
    let mut parameters = Vec::new();
    let mut key = None;
    loop {
        let frame = reader.next().await?.ok_or_else(|| {
            UpstreamError::Protocol("closed the connection during startup".into())
        })?;
        match frame.tag {
            b'R' => {
                let auth = Authentication::decode(&frame)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                let reply = authenticate(
                    &auth,
                    credential,
                    &mut scram,
                    channel_binding.as_ref(),
                    tls,
                    params,
                )?;
                if let Some(reply) = reply {
                    let stream = reader_stream(&mut reader);
                    stream.write_all(&reply.bytes).await?;
                    stream.flush().await?;
                }
            }
            b'E' => {
                let fields = ErrorFields::decode(&frame)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                return Err(UpstreamError::Refused(Box::new(fields), frame));
            }
            b'S' => {
                let status = ParameterStatus::decode(&frame)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                parameters.push((status.name.to_string(), status.value.to_string()));
                startup_messages.push(frame);
            }
            b'K' => {
                key = Some(
                    BackendKeyData::decode(&frame)
                        .map_err(|e| UpstreamError::Protocol(e.to_string()))?,
                );
            }
            b'N' | b'v' => startup_messages.push(frame),
            b'Z' => {
                let ready_status = super::messages::backend::ready_for_query_status(&frame)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                let (stream, leftover) = reader.into_parts();
                return Ok(Upstream {
                    stream,
                    leftover,
                    startup_messages,
                    parameters,
                    key,
                    ready_status,
                });
            }
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "sent message type {:?} during startup",
                    other as char
                )));
            }
        }
    }
}

/// The write half of the stream a reader wraps (startup is strictly request/response, so
/// writing through the reader's stream is safe here).
fn reader_stream(reader: &mut FrameReader<Stream>) -> &mut Stream {
    reader.get_mut()
}

/// The answer to one authentication request, if it needs one.
fn authenticate(
    auth: &Authentication<'_>,
    credential: &UpstreamCredential,
    scram: &mut Option<ScramClient>,
    channel_binding: Option<&Vec<u8>>,
    tls: bool,
    params: &[(String, String)],
) -> Result<Option<Frame>, UpstreamError> {
    match auth {
        Authentication::Ok => Ok(None),
        Authentication::CleartextPassword => match credential {
            UpstreamCredential::Password(p) => Ok(Some(encode_password(p))),
            _ => Err(UpstreamError::UnsupportedAuth(
                "a cleartext password (configure scram-sha-256 or md5 for warden's address in pg_hba.conf)".into(),
            )),
        },
        Authentication::Md5Password { salt } => match credential {
            UpstreamCredential::Md5(v) => Ok(Some(encode_password(&v.response(salt)))),
            UpstreamCredential::Password(p) => {
                let user = params
                    .iter()
                    .find(|(k, _)| k == "user")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                let v = super::auth::Md5Verifier::from_password(p, user);
                Ok(Some(encode_password(&v.response(salt))))
            }
            UpstreamCredential::Scram { .. } => Err(UpstreamError::UnsupportedAuth(
                "md5 while the user's verifier is SCRAM (configure scram-sha-256 in pg_hba.conf)".into(),
            )),
        },
        Authentication::Sasl { mechanisms } => {
            let secret = match credential {
                UpstreamCredential::Scram {
                    client_key,
                    verifier,
                } => ScramSecret::Key {
                    client_key: *client_key,
                    verifier: verifier.clone(),
                },
                UpstreamCredential::Password(p) => ScramSecret::Password(p.clone()),
                UpstreamCredential::Md5(_) => {
                    return Err(UpstreamError::UnsupportedAuth(
                        "SCRAM while the user's verifier is md5 (set the password again with password_encryption = scram-sha-256)".into(),
                    ));
                }
            };
            let binding = if tls && mechanisms.contains(&MECHANISM_PLUS) {
                channel_binding.cloned()
            } else {
                None
            };
            if binding.is_none() && !mechanisms.contains(&MECHANISM) {
                return Err(UpstreamError::UnsupportedAuth(format!(
                    "SASL mechanisms {mechanisms:?}"
                )));
            }
            let client = ScramClient::new(secret, binding, tls);
            let first = SaslInitialResponse::encode(client.mechanism(), client.client_first().as_bytes());
            *scram = Some(client);
            Ok(Some(first))
        }
        Authentication::SaslContinue { data } => {
            let client = scram
                .as_mut()
                .ok_or_else(|| UpstreamError::Protocol("SASL continue without SASL".into()))?;
            let reply = client.server_first(data)?;
            Ok(Some(encode_sasl_response(reply.as_bytes())))
        }
        Authentication::SaslFinal { data } => {
            let client = scram
                .as_ref()
                .ok_or_else(|| UpstreamError::Protocol("SASL final without SASL".into()))?;
            client.server_final(data)?;
            Ok(None)
        }
        Authentication::Other { code } => Err(UpstreamError::UnsupportedAuth(format!(
            "authentication method {code} (only SCRAM-SHA-256, md5 and trust are supported)"
        ))),
    }
}
