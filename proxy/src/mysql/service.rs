//! Warden's own MySQL / MariaDB client, for its service login (`[upstream.service]`).
//!
//! Warden reads the catalog of the policy's tables (`information_schema`) as a user of its own.
//! The login reuses the relay's pieces: [`greet`] and [`respond`] (TCP, TLS as configured for
//! the database), the crate's handshake response, and mysql_native_password with the password
//! from the environment variable the configuration names (an auth switch to
//! mysql_native_password is answered too; other plugins are not supported for this login).
//! Queries use COM_QUERY with text results: rows of `Option<String>` ([`ServiceClient::query`]),
//! or the affected rows ([`ServiceClient::execute`], for the migrations' writes). It is
//! deliberately small: one statement at a time, no prepared statements.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::auth::{NATIVE_PASSWORD, scramble};
use super::codec::Reader;
use super::constants::{caps, command, status};
use super::messages::{ErrPacket, HandshakeResponse, OkPacket, is_terminator};
use super::packet::{Packet, PacketReader};
use super::upstream::{Greeting, UpstreamError, greet, respond};
use crate::config::{ServiceConfig, UpstreamConfig};
use crate::net::Stream;

/// Largest packet accepted from the database on the service connection.
const MAX_PACKET: usize = 1 << 30;

/// utf8mb4_general_ci.
const UTF8MB4: u8 = 45;

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The database could not be reached or refused the login.
    #[error("warden's service login `{user}` failed: {message}")]
    Login { user: String, message: String },
    /// The password's environment variable is not set.
    #[error("environment variable {0} (the password of warden's service login) is not set")]
    MissingPassword(String),
    /// The upstream has no `[upstream.service]`.
    #[error("upstream `{0}` has no [upstream.service]: warden needs its own login to the database")]
    NotConfigured(String),
    /// The database answered with an ERR packet; the connection is still usable.
    #[error("{message} (error {code}, SQLSTATE {sqlstate})")]
    Query {
        code: u16,
        sqlstate: String,
        message: String,
    },
    /// The connection broke or the database broke the protocol; drop the client.
    #[error("the service connection to the database broke: {0}")]
    Connection(String),
}

impl ServiceError {
    /// The database's error number, for an ERR packet.
    pub fn code(&self) -> Option<u16> {
        match self {
            ServiceError::Query { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Rows of text values (`None` for SQL NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// A logged-in service connection.
pub struct ServiceClient {
    reader: PacketReader<Stream>,
}

fn broken(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Connection(e.to_string())
}

impl ServiceClient {
    /// Logs in to the database of `upstream` (its address, server TLS and `[upstream.service]`),
    /// giving up after `timeout`.
    pub async fn connect_upstream(
        upstream: &UpstreamConfig,
        timeout: Duration,
        program: &str,
    ) -> Result<ServiceClient, ServiceError> {
        let service = upstream
            .service
            .as_ref()
            .ok_or_else(|| ServiceError::NotConfigured(upstream.name.clone()))?;
        let password = match &service.password_env {
            None => String::new(),
            Some(var) => {
                std::env::var(var).map_err(|_| ServiceError::MissingPassword(var.clone()))?
            }
        };
        let login = |message: String| ServiceError::Login {
            user: service.user.clone(),
            message,
        };
        let tls = crate::tls::server_side(&upstream.server_tls)
            .map_err(|e| login(format!("server TLS: {e}")))?;
        let connect = async {
            let (handshake, reader) = match greet(&upstream.server, timeout, MAX_PACKET).await {
                Ok(Greeting::Handshake(h, r)) => (h, r),
                Ok(Greeting::Refused(err)) => return Err(login(err.describe())),
                Err(e) => return Err(login(e.to_string())),
            };
            let response = login_response(
                service,
                &password,
                &handshake.scramble,
                handshake.capabilities,
                program,
            );
            let (mut reader, _) = respond(
                reader,
                &handshake,
                &upstream.server,
                tls.as_ref(),
                response,
                MAX_PACKET,
            )
            .await
            .map_err(|e: UpstreamError| login(e.to_string()))?;
            loop {
                let packet = reader.expect().await.map_err(|e| login(e.to_string()))?;
                match packet.first() {
                    Some(0x00) => break,
                    Some(0xff) => {
                        let err = ErrPacket::decode(&packet.payload())
                            .map_err(|e| login(e.to_string()))?;
                        return Err(login(err.describe()));
                    }
                    // Auth switch: answer mysql_native_password with the new scramble.
                    Some(0xfe) => {
                        let payload = packet.payload();
                        let mut r = Reader::new(&payload);
                        r.u8("switch").map_err(|e| login(e.to_string()))?;
                        let plugin = r.nul_bytes();
                        if plugin != NATIVE_PASSWORD {
                            return Err(login(format!(
                                "the database asks for authentication plugin {}; warden's service login supports mysql_native_password",
                                String::from_utf8_lossy(plugin)
                            )));
                        }
                        let salt = r.rest();
                        let salt = salt.strip_suffix(&[0]).unwrap_or(salt);
                        let answer = native(&password, salt);
                        let out = Packet::new(packet.last_seq.wrapping_add(1), &answer);
                        let stream = reader.get_mut();
                        stream
                            .write_all(out.raw())
                            .await
                            .map_err(|e| login(e.to_string()))?;
                        stream.flush().await.map_err(|e| login(e.to_string()))?;
                    }
                    _ => {
                        return Err(login(
                            "the database sent an unexpected packet during the service login"
                                .into(),
                        ));
                    }
                }
            }
            Ok(ServiceClient { reader })
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| login(format!("timed out after {timeout:?}")))?
    }

    /// Runs one statement; returns the rows of its result sets, as text.
    pub async fn query(&mut self, sql: &str) -> Result<Rows, ServiceError> {
        self.run(sql).await.map(|(rows, _)| rows)
    }

    /// Runs one statement that returns no rows (or whose rows do not matter); returns the
    /// affected rows of its last OK packet (changed rows, not matched ones).
    pub async fn execute(&mut self, sql: &str) -> Result<u64, ServiceError> {
        self.run(sql).await.map(|(_, affected)| affected)
    }

    /// Runs one statement: the rows of its result sets, and the affected rows of the last OK.
    async fn run(&mut self, sql: &str) -> Result<(Rows, u64), ServiceError> {
        let mut payload = vec![command::QUERY];
        payload.extend_from_slice(sql.as_bytes());
        let stream = self.reader.get_mut();
        stream
            .write_all(Packet::new(0, &payload).raw())
            .await
            .map_err(broken)?;
        stream.flush().await.map_err(broken)?;
        let mut rows = Vec::new();
        let mut affected = 0;
        loop {
            let first = self.reader.expect().await.map_err(broken)?;
            let more = match first.first() {
                Some(0x00) => {
                    let ok = OkPacket::decode(&first.payload()).map_err(broken)?;
                    affected = ok.affected_rows;
                    ok.status
                }
                Some(0xff) => return Err(query_error(&first)),
                _ => {
                    let columns = Reader::new(first.head())
                        .lenenc("column count")
                        .map_err(broken)?;
                    for _ in 0..=columns {
                        // The definitions and the EOF after them.
                        self.reader.expect().await.map_err(broken)?;
                    }
                    loop {
                        let packet = self.reader.expect().await.map_err(broken)?;
                        if packet.first() == Some(0xff) {
                            return Err(query_error(&packet));
                        }
                        if is_terminator(&packet, false) {
                            break OkPacket::decode_eof(&packet.payload())
                                .map_err(broken)?
                                .status;
                        }
                        let payload = packet.payload();
                        let mut r = Reader::new(&payload);
                        let mut row = Vec::with_capacity(columns as usize);
                        for _ in 0..columns {
                            row.push(match r.lenenc_or_null("value").map_err(broken)? {
                                None => None,
                                Some(n) => Some(
                                    String::from_utf8_lossy(
                                        r.take(n as usize, "value").map_err(broken)?,
                                    )
                                    .into_owned(),
                                ),
                            });
                        }
                        rows.push(row);
                    }
                }
            };
            if more & status::MORE_RESULTS_EXISTS == 0 {
                return Ok((rows, affected));
            }
        }
    }

    /// Ends the session politely.
    pub async fn close(mut self) {
        let stream = self.reader.get_mut();
        let _ = stream
            .write_all(Packet::new(0, &[command::QUIT]).raw())
            .await;
        let _ = stream.shutdown().await;
    }
}

fn query_error(packet: &Packet) -> ServiceError {
    match ErrPacket::decode(&packet.payload()) {
        Ok(e) => ServiceError::Query {
            code: e.code,
            sqlstate: e.sqlstate,
            message: e.message,
        },
        Err(e) => broken(e),
    }
}

fn native(password: &str, scramble_bytes: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    scramble::native_response(&scramble::sha1(password.as_bytes()), scramble_bytes)
}

/// The handshake response of the service login.
fn login_response(
    service: &ServiceConfig,
    password: &str,
    scramble_bytes: &[u8],
    server_caps: u64,
    program: &str,
) -> HandshakeResponse {
    let wanted = caps::CLIENT_MYSQL
        | caps::LONG_FLAG
        | caps::CONNECT_WITH_DB
        | caps::PROTOCOL_41
        | caps::TRANSACTIONS
        | caps::SECURE_CONNECTION
        | caps::MULTI_RESULTS
        | caps::PLUGIN_AUTH
        | caps::PLUGIN_AUTH_LENENC_DATA
        | caps::CONNECT_ATTRS;
    HandshakeResponse {
        capabilities: wanted & (server_caps | caps::CLIENT_MYSQL),
        max_packet: MAX_PACKET as u32,
        charset: UTF8MB4,
        user: service.user.as_bytes().to_vec(),
        auth_response: native(password, scramble_bytes),
        database: Some(service.database.as_bytes().to_vec()),
        auth_plugin: Some(NATIVE_PASSWORD.to_vec()),
        attributes: vec![("program_name".to_string(), program.to_string())],
        ssl_request: false,
    }
}
