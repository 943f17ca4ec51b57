//! A new client connection, from its first byte to a relayed session: TLS negotiation,
//! startup, authentication, the database login, and the handover to the relay.
//!
//! Every failure here ends the connection with an error the client's driver understands (a
//! FATAL ErrorResponse where the protocol allows one) and, once the user is known, an audit
//! record of the failed login. The whole startup phase runs under the configured startup
//! timeout, so a client that connects and says nothing cannot hold resources.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use warden_audit::{AuditEvent, AuditRecord, AuditResult, Protocol};
use warden_policy::SessionIdentity;

use super::auth::client::{ClientAuthError, authenticate};
use super::auth::verifiers::VerifierSource;
use super::cancel::{CancelRegistry, CancelTarget, send_cancel};
use super::frame::{FrameError, FrameReader, Peer};
use super::messages::backend::{AUTH_OK, ErrorFields, authentication, sqlstate};
use super::messages::startup::StartupPacket;
use super::session::{SessionContext, Shutdown, relay};
use super::upstream::{Target, UpstreamError};
use crate::config::{ClientTlsMode, UpstreamConfig};
use crate::metrics::UpstreamMetrics;
use crate::net::{Stream, tune};
use crate::pipeline::Shared;
use crate::pipeline::records::SessionRecords;
use crate::tls::{ClientTls, ServerTls, certificate_subject};

/// Everything the listener of one PostgreSQL upstream needs.
pub struct PgUpstream {
    pub config: UpstreamConfig,
    pub client_tls: Option<ClientTls>,
    pub server_tls: Option<ServerTls>,
    pub verifiers: VerifierSource,
    pub metrics: UpstreamMetrics,
    pub shared: Arc<Shared>,
    pub cancel: Arc<CancelRegistry>,
    /// Sessions admitted and not yet ended, against `max_sessions`.
    pub active: Arc<AtomicUsize>,
    /// Column encryption, when the upstream's policy declares encrypted columns.
    pub encryption: Option<Arc<crate::encryption::Encryption>>,
}

impl PgUpstream {
    fn target(&self) -> Target<'_> {
        Target {
            address: &self.config.server,
            tls: self.server_tls.as_ref(),
            timeout: self.shared.limits.connect_timeout,
        }
    }
}

/// Why a connection did not become a session.
enum Refused {
    /// The client went away or broke the protocol before saying who it is.
    Silent(String),
    /// Tell the client this error, audit a failed login, close.
    Login {
        error: ErrorFields,
        reason: String,
        user: String,
        database: String,
        program: String,
    },
    /// Relay the database's own startup error, audit a failed login, close.
    Database {
        frame: super::frame::Frame,
        error: ErrorFields,
        user: String,
        database: String,
        program: String,
    },
}

/// A negotiated, authenticated client ready to be relayed.
struct Admitted {
    client: Stream,
    client_buffered: BytesMut,
    server: super::upstream::Upstream,
    identity: SessionIdentity,
}

/// Serves one accepted connection until its session ends.
pub async fn serve_connection(
    upstream: Arc<PgUpstream>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) {
    tune(&tcp);
    let session_id = upstream.shared.next_session_id();
    let startup = tokio::time::timeout(
        upstream.shared.limits.startup_timeout,
        admit(&upstream, tcp, peer, session_id),
    )
    .await;
    let (mut stream, outcome) = match startup {
        Err(_) => {
            tracing::info!(%peer, "client did not complete startup in time");
            return;
        }
        Ok(result) => result,
    };
    let admitted = match outcome {
        Ok(Some(admitted)) => admitted,
        Ok(None) => return,
        Err(refused) => {
            refuse(&upstream, stream.as_mut(), refused, peer, session_id).await;
            return;
        }
    };
    let _ = stream.take();

    let Admitted {
        mut client,
        client_buffered,
        server,
        identity,
    } = admitted;

    // Warden's own cancel key stands for the database's.
    let (key, _cancel_guard) = match &server.key {
        Some(real) => {
            let (key, guard) = upstream.cancel.register(CancelTarget {
                address: upstream.config.server.clone(),
                tls: upstream.server_tls.clone(),
                key: real.clone(),
            });
            (Some(key), Some(guard))
        }
        None => (None, None),
    };
    let mut hello = authentication(AUTH_OK, &[]).bytes.to_vec();
    for message in &server.startup_messages {
        hello.extend_from_slice(&message.bytes);
    }
    if let Some(key) = &key {
        hello.extend_from_slice(&key.encode().bytes);
    }
    hello.extend_from_slice(
        &super::messages::MessageBuilder::new(b'Z')
            .u8(server.ready_status)
            .finish()
            .bytes,
    );
    if client.write_all(&hello).await.is_err() || client.flush().await.is_err() {
        return;
    }

    let records = SessionRecords::new(&identity);
    let login = records.event(AuditEvent::Login, OffsetDateTime::now_utc());
    if let Err(rejected) = upstream.shared.audit.submit(login).await {
        tracing::error!(reason = %rejected, record = ?rejected.record, "audit trail rejected a login record; closing the session");
        let error = ErrorFields::fatal(
            "58000",
            "warden cannot record this session in the audit trail; try again later",
        );
        let _ = client.write_all(&error.encode().bytes).await;
        return;
    }
    upstream.metrics.login_ok.inc();
    upstream.metrics.sessions_total.inc();
    upstream.metrics.sessions_active.inc();
    tracing::info!(
        session = identity.session_id,
        upstream = %identity.upstream,
        user = %identity.user,
        database = %identity.database,
        program = %identity.program,
        client = %identity.client_addr,
        tls = identity.tls,
        "session started"
    );
    let ctx = SessionContext {
        shared: upstream.shared.clone(),
        metrics: upstream.metrics.clone(),
        identity,
        encryption: upstream.encryption.clone(),
    };
    relay(
        ctx,
        client,
        client_buffered,
        server.stream,
        server.leftover,
        &server.parameters,
        shutdown,
    )
    .await;
    upstream.metrics.sessions_active.dec();
    upstream.active.fetch_sub(1, Ordering::Relaxed);
}

/// Negotiates TLS, reads the startup packet, authenticates the client and logs in upstream.
/// Returns the client stream (when still usable) alongside the outcome, so refusals can be
/// written to it.
async fn admit(
    upstream: &PgUpstream,
    tcp: TcpStream,
    peer: SocketAddr,
    session_id: u64,
) -> (Option<Stream>, Result<Option<Admitted>, Refused>) {
    let max = upstream.shared.limits.max_message_bytes;
    // PostgreSQL 17 clients may start TLS at once (sslnegotiation=direct): the first byte is
    // then a TLS handshake record instead of a startup packet. Peeking leaves it in the socket
    // for the TLS layer to read.
    let mut first = [0u8; 1];
    let mut stream = match tcp.peek(&mut first).await {
        Ok(0) => return (None, Ok(None)),
        Err(e) => return (None, Err(Refused::Silent(e.to_string()))),
        Ok(_) if first[0] == 0x16 => match start_tls(upstream, Stream::Plain(tcp), false).await {
            Ok(s) => s,
            Err(e) => return (None, Err(Refused::Silent(e))),
        },
        Ok(_) => Stream::Plain(tcp),
    };
    let mut buffered = BytesMut::new();
    let (version, params) = loop {
        let mut reader = FrameReader::with_buffered(stream, Peer::Client, max, buffered);
        let frame = match reader.next_startup().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return (None, Ok(None)),
            Err(e) => {
                let (s, _) = reader.into_parts();
                return (Some(s), Err(startup_violation(e)));
            }
        };
        let packet = match StartupPacket::decode(&frame) {
            Ok(p) => p,
            Err(e) => {
                let (s, _) = reader.into_parts();
                return (
                    Some(s),
                    Err(Refused::Login {
                        error: ErrorFields::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
                        reason: e.to_string(),
                        user: String::new(),
                        database: String::new(),
                        program: String::new(),
                    }),
                );
            }
        };
        let (s, rest) = reader.into_parts();
        match packet {
            StartupPacket::SslRequest => {
                if s.is_tls() {
                    return (None, Err(Refused::Silent("SSLRequest inside TLS".into())));
                }
                // Bytes sent after the SSLRequest but before the handshake would be unencrypted
                // data smuggled into the session (CVE-2021-23222): refuse them.
                if !rest.is_empty() {
                    return (
                        None,
                        Err(Refused::Silent(
                            "the client sent data before the TLS handshake".into(),
                        )),
                    );
                }
                match start_tls(upstream, s, true).await {
                    Ok(s) => {
                        stream = s;
                        buffered = BytesMut::new();
                    }
                    Err(e) => return (None, Err(Refused::Silent(e))),
                }
            }
            StartupPacket::GssEncRequest => {
                let mut s = s;
                // GSSAPI encryption is not offered; the client goes on with TLS or plain.
                if s.write_all(b"N").await.is_err() {
                    return (None, Ok(None));
                }
                stream = s;
                buffered = rest;
            }
            StartupPacket::Cancel { pid, secret } => {
                match upstream.cancel.lookup(pid, &secret) {
                    Some(target) => {
                        if let Err(e) =
                            send_cancel(&target, upstream.shared.limits.connect_timeout).await
                        {
                            tracing::warn!(%peer, error = %e, "could not forward a cancel request");
                        } else {
                            tracing::info!(%peer, "cancel request forwarded");
                        }
                    }
                    None => tracing::info!(%peer, "cancel request with an unknown key ignored"),
                }
                return (None, Ok(None));
            }
            StartupPacket::Startup { version, params } => {
                stream = s;
                buffered = rest;
                break (version, params);
            }
        }
    };

    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let user = param("user").unwrap_or_default();
    let database = param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    let program = param("application_name").unwrap_or_default();
    let login_refused = |code: &str, message: String, reason: String| Refused::Login {
        error: ErrorFields::fatal(code, message),
        reason,
        user: user.clone(),
        database: database.clone(),
        program: program.clone(),
    };
    if user.is_empty() {
        return (
            Some(stream),
            Err(login_refused(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet".into(),
                "no user name".into(),
            )),
        );
    }
    if upstream.config.client_tls.mode == ClientTlsMode::Require && !stream.is_tls() {
        return (
            Some(stream),
            Err(login_refused(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "warden requires TLS for connections to \"{}\" (use sslmode=require)",
                    upstream.config.name
                ),
                "client did not use TLS, which is required".into(),
            )),
        );
    }
    if param("replication").is_some_and(|r| r != "false" && r != "off" && r != "0") {
        return (
            Some(stream),
            Err(login_refused(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "replication connections cannot go through warden".into(),
                "replication connection refused".into(),
            )),
        );
    }
    if upstream.active.fetch_add(1, Ordering::Relaxed) >= upstream.shared.limits.max_sessions {
        upstream.active.fetch_sub(1, Ordering::Relaxed);
        return (
            Some(stream),
            Err(login_refused(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already".into(),
                "session limit reached".into(),
            )),
        );
    }
    // From here on `active` counts this connection; every refusal path releases it.
    let release = |r| {
        upstream.active.fetch_sub(1, Ordering::Relaxed);
        r
    };

    let verifier = match upstream.verifiers.lookup(&upstream.target(), &user).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(upstream = %upstream.config.name, %user, error = %e, "cannot look up the user's verifier");
            return (
                Some(stream),
                Err(release(login_refused(
                    sqlstate::CANNOT_CONNECT_NOW,
                    "warden cannot check credentials right now; try again later".into(),
                    format!("verifier lookup failed: {e}"),
                ))),
            );
        }
    };
    let channel_binding = if stream.is_tls() {
        upstream
            .client_tls
            .as_ref()
            .and_then(|t| t.channel_binding.clone())
    } else {
        None
    };
    let cert_subject = stream
        .peer_certificate()
        .and_then(|c| certificate_subject(&c));
    let tls = stream.is_tls();
    let mut reader = FrameReader::with_buffered(stream, Peer::Client, max, buffered);
    let credential = match authenticate(
        &mut reader,
        &user,
        verifier,
        channel_binding,
        &upstream.shared.mock_secret,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            let (s, _) = reader.into_parts();
            let refused = match e {
                ClientAuthError::Failed { reason } => login_refused(
                    sqlstate::INVALID_PASSWORD,
                    format!("password authentication failed for user \"{user}\""),
                    reason,
                ),
                ClientAuthError::Protocol(p) => login_refused(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid authentication exchange: {p}"),
                    format!("authentication protocol violation: {p}"),
                ),
                ClientAuthError::Frame(e) => login_refused(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid message during authentication: {e}"),
                    format!("authentication protocol violation: {e}"),
                ),
                ClientAuthError::Io(e) => {
                    return (None, Err(release(Refused::Silent(e.to_string()))));
                }
            };
            return (Some(s), Err(release(refused)));
        }
    };
    let (client, client_buffered) = reader.into_parts();

    let server = match upstream
        .target()
        .connect(version, &params, &credential)
        .await
    {
        Ok(server) => server,
        Err(UpstreamError::Refused(error, frame)) => {
            return (
                Some(client),
                Err(release(Refused::Database {
                    frame,
                    error: *error,
                    user,
                    database,
                    program,
                })),
            );
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream.config.name, %user, error = %e, "cannot open the database session");
            return (
                Some(client),
                Err(release(login_refused(
                    sqlstate::CONNECTION_FAILURE,
                    format!("warden could not open a session on the database: {e}"),
                    format!("database login failed: {e}"),
                ))),
            );
        }
    };

    let client_mac = crate::neighbour::lookup(peer.ip()).map(|m| m.to_string());
    let identity = SessionIdentity {
        session_id,
        upstream: upstream.config.name.clone(),
        protocol: "postgres",
        user,
        database,
        program,
        client_addr: peer,
        client_mac,
        client_host: None,
        os_user: None,
        cert_subject,
        tls,
    };
    (
        None,
        Ok(Some(Admitted {
            client,
            client_buffered,
            server,
            identity,
        })),
    )
}

/// Answers an SSLRequest (`announce`) or takes a direct handshake, and runs the TLS
/// handshake. A direct handshake must name the `postgresql` ALPN protocol, as PostgreSQL 17
/// requires, so that a TLS connection meant for another service is not taken for a session.
async fn start_tls(
    upstream: &PgUpstream,
    stream: Stream,
    announce: bool,
) -> Result<Stream, String> {
    let Stream::Plain(mut tcp) = stream else {
        return Err("TLS requested twice".into());
    };
    let Some(tls) = &upstream.client_tls else {
        if announce {
            tcp.write_all(b"N").await.map_err(|e| e.to_string())?;
            return Ok(Stream::Plain(tcp));
        }
        return Err("a client started TLS, which this listener does not offer".into());
    };
    if announce {
        tcp.write_all(b"S").await.map_err(|e| e.to_string())?;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let stream = acceptor
        .accept(tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    if !announce && stream.get_ref().1.alpn_protocol() != Some(b"postgresql") {
        return Err("a direct TLS connection did not ask for the postgresql ALPN protocol".into());
    }
    Ok(Stream::ServerTls(Box::new(stream)))
}

fn startup_violation(e: FrameError) -> Refused {
    match e {
        FrameError::Io(e) => Refused::Silent(e.to_string()),
        FrameError::Truncated => Refused::Silent("the client closed during startup".into()),
        other => Refused::Login {
            error: ErrorFields::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid startup packet: {other}"),
            ),
            reason: other.to_string(),
            user: String::new(),
            database: String::new(),
            program: String::new(),
        },
    }
}

/// Ends a connection that did not become a session: the error to the client, the audit record.
async fn refuse(
    upstream: &PgUpstream,
    stream: Option<&mut Stream>,
    refused: Refused,
    peer: SocketAddr,
    session_id: u64,
) {
    let (frame, code, message, reason, user, database, program) = match refused {
        Refused::Silent(reason) => {
            tracing::debug!(%peer, %reason, "connection closed before startup");
            return;
        }
        Refused::Login {
            error,
            reason,
            user,
            database,
            program,
        } => (
            error.encode(),
            error.code.clone(),
            error.message.clone(),
            reason,
            user,
            database,
            program,
        ),
        Refused::Database {
            frame,
            error,
            user,
            database,
            program,
        } => (
            frame,
            error.code.clone(),
            error.message.clone(),
            format!("the database refused the login: {}", error.message),
            user,
            database,
            program,
        ),
    };
    if let Some(stream) = stream {
        let _ = stream.write_all(&frame.bytes).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
    upstream.metrics.login_failed.inc();
    tracing::info!(%peer, upstream = %upstream.config.name, %user, %reason, "login refused");
    if user.is_empty() {
        upstream.metrics.client_protocol_errors.inc();
        return;
    }
    let mut record = AuditRecord::new(
        OffsetDateTime::now_utc(),
        AuditEvent::LoginFailed,
        session_id,
        upstream.config.name.clone(),
        Protocol::Postgres,
        user,
        database,
        peer.ip(),
        peer.port(),
    );
    record.program = (!program.is_empty()).then_some(program);
    record.client_mac =
        crate::neighbour::lookup(peer.ip()).and_then(|m| m.to_string().parse().ok());
    record.result = AuditResult::Error;
    record.error_code = Some(code);
    record.message = Some(format!("{message} ({reason})"));
    if let Err(rejected) = upstream.shared.audit.submit(record).await {
        tracing::error!(reason = %rejected, record = ?rejected.record, "audit trail rejected a failed-login record");
    }
}
