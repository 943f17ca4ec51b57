//! Opening a session on the MySQL/MariaDB server: TCP, the server's handshake, TLS with the
//! configured verification (the SSL request inside the protocol), and the handshake response.
//!
//! Warden connects to the database *before* it greets the client, because the database's
//! fresh scramble becomes the scramble of warden's own handshake: a client's answer to it is
//! then an answer the database can check, and warden keeps no salts or secrets of its own.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::codec::DecodeError;
use super::constants::caps;
use super::messages::{ErrPacket, Handshake, HandshakeResponse};
use super::packet::{Packet, PacketError, PacketReader};
use crate::config::{ServerAddress, ServerTlsMode};
use crate::net::{Stream, tune};
use crate::tls::ServerTls;

/// Why warden could not open a session on the database.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the database at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to the database at {0}")]
    Timeout(String),
    #[error("the database at {0} does not offer TLS, which the configuration requires")]
    TlsRefused(String),
    #[error("TLS with the database at {address} failed: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    #[error("the database broke the protocol: {0}")]
    Protocol(String),
    #[error("the database connection failed: {0}")]
    Packet(#[from] PacketError),
    #[error("i/o error talking to the database: {0}")]
    Io(#[from] std::io::Error),
}

impl From<DecodeError> for UpstreamError {
    fn from(e: DecodeError) -> Self {
        UpstreamError::Protocol(e.to_string())
    }
}

/// What the database said first.
pub enum Greeting {
    /// Its handshake: a connection waiting for warden's handshake response.
    Handshake(Box<Handshake>, PacketReader<Stream>),
    /// An error instead of a handshake (too many connections, host blocked...).
    Refused(ErrPacket),
}

/// Connects to the database and reads its handshake.
pub async fn greet(
    address: &ServerAddress,
    timeout: Duration,
    max_packet: usize,
) -> Result<Greeting, UpstreamError> {
    let text = address.to_string();
    let connect = async {
        let tcp = TcpStream::connect((address.host.as_str(), address.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                address: text.clone(),
                source,
            })?;
        tune(&tcp);
        let mut reader = PacketReader::new(Stream::Plain(tcp), max_packet.min(1 << 20));
        let first = reader.expect().await?;
        if first.first() == Some(0xff) {
            return Ok(Greeting::Refused(ErrPacket::decode(&first.payload())?));
        }
        let handshake = Handshake::decode(&first.payload())?;
        let (stream, rest) = reader.into_parts();
        Ok(Greeting::Handshake(
            Box::new(handshake),
            PacketReader::with_buffered(stream, max_packet, rest),
        ))
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| UpstreamError::Timeout(text.clone()))?
}

/// Sends `response` to a greeted database, after an SSL request and the TLS handshake when
/// `tls` is configured and the database offers it. Returns the connection and the sequence
/// id the database's next packet carries.
pub async fn respond(
    reader: PacketReader<Stream>,
    handshake: &Handshake,
    address: &ServerAddress,
    tls: Option<&ServerTls>,
    mut response: HandshakeResponse,
    max_packet: usize,
) -> Result<(PacketReader<Stream>, u8), UpstreamError> {
    let (mut stream, rest) = reader.into_parts();
    if !rest.is_empty() {
        return Err(UpstreamError::Protocol(
            "the database sent data after its handshake".into(),
        ));
    }
    let mut seq = 1u8;
    response.capabilities &= !caps::SSL;
    if let Some(tls) = tls {
        if handshake.capabilities & caps::SSL != 0 {
            response.capabilities |= caps::SSL;
            let request = HandshakeResponse {
                ssl_request: true,
                ..response.clone()
            };
            stream
                .write_all(Packet::new(seq, &request.encode()).raw())
                .await?;
            stream.flush().await?;
            seq += 1;
            let Stream::Plain(tcp) = stream else {
                return Err(UpstreamError::Protocol("TLS started twice".into()));
            };
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let tls_stream = connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|source| UpstreamError::Tls {
                    address: address.to_string(),
                    source,
                })?;
            stream = Stream::ClientTls(Box::new(tls_stream));
        } else if tls.mode != ServerTlsMode::Prefer {
            return Err(UpstreamError::TlsRefused(address.to_string()));
        }
    }
    stream
        .write_all(Packet::new(seq, &response.encode()).raw())
        .await?;
    stream.flush().await?;
    Ok((
        PacketReader::with_buffered(stream, max_packet, rest),
        seq + 1,
    ))
}
