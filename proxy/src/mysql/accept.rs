//! A new MySQL client connection, from the first byte to a relayed session: the database's
//! handshake passed on with warden's capabilities, TLS, the client's handshake response,
//! authentication, and the handover to the relay.
//!
//! Every failure ends the connection with an ERR packet the client's driver shows and, once
//! the user is known, an audit record of the failed login. The whole phase runs under the
//! configured startup timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use warden_audit::{AuditEvent, AuditRecord, AuditResult, Protocol};
use warden_policy::SessionIdentity;

use super::auth::caching_sha2::{self, Sha2Authenticator};
use super::auth::{AuthOutcome, ExchangeError, relay_exchange, send};
use super::constants::{caps, errors};
use super::messages::{ErrPacket, Handshake, HandshakeResponse, attribute};
use super::packet::{Packet, PacketReader};
use super::session::{Negotiated, relay};
use super::upstream::{Greeting, UpstreamError, greet, respond};
use crate::config::{ClientTlsMode, MysqlAuthPlugin, UpstreamConfig};
use crate::metrics::UpstreamMetrics;
use crate::net::{Stream, tune};
use crate::pg::session::Shutdown;
use crate::pipeline::Shared;
use crate::pipeline::records::SessionRecords;
use crate::tls::{ClientTls, ServerTls, certificate_subject};

/// Everything the listener of one MySQL upstream needs.
pub struct MySqlUpstream {
    pub config: UpstreamConfig,
    pub client_tls: Option<ClientTls>,
    pub server_tls: Option<ServerTls>,
    pub metrics: UpstreamMetrics,
    pub shared: Arc<Shared>,
    /// caching_sha2_password termination, when configured.
    pub sha2: Option<Arc<Sha2Authenticator>>,
    /// Sessions admitted and not yet ended, against `max_sessions`.
    pub active: Arc<AtomicUsize>,
    /// Column encryption, when the upstream's policy declares encrypted columns.
    pub encryption: Option<Arc<crate::encryption::Encryption>>,
}

/// Why a connection did not become a session.
struct Refused {
    /// What the client is told (numbered).
    packet: Option<Box<Packet>>,
    code: String,
    message: String,
    reason: String,
    /// Who tried to log in, when that is known.
    login: Option<Box<Login>>,
}

/// Who a client says it is, from its handshake response.
#[derive(Clone, Default)]
struct Login {
    user: String,
    database: String,
    attributes: Vec<(String, String)>,
}

impl Refused {
    fn silent(reason: impl Into<String>) -> Refused {
        Refused {
            packet: None,
            code: String::new(),
            message: String::new(),
            reason: reason.into(),
            login: None,
        }
    }

    fn error(seq: u8, err: ErrPacket, reason: impl Into<String>, login: Option<&Login>) -> Refused {
        Refused {
            packet: Some(Box::new(err.packet(seq))),
            code: err.audit_code(),
            message: err.describe(),
            reason: reason.into(),
            login: login.cloned().map(Box::new),
        }
    }
}

/// A logged-in client and database session, ready to be relayed.
struct Admitted {
    client: PacketReader<Stream>,
    server: PacketReader<Stream>,
    /// The database's OK to the login, numbered for the client.
    ok: Packet,
    identity: SessionIdentity,
    negotiated: Negotiated,
    attributes: Vec<(String, String)>,
}

/// Serves one accepted connection until its session ends.
pub async fn serve_connection(
    upstream: Arc<MySqlUpstream>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) {
    tune(&tcp);
    let session_id = upstream.shared.next_session_id();
    let mut client = Some(Stream::Plain(tcp));
    let startup = tokio::time::timeout(
        upstream.shared.limits.startup_timeout,
        admit(&upstream, &mut client, peer, session_id),
    )
    .await;
    let admitted = match startup {
        Err(_) => {
            tracing::info!(%peer, "MySQL client did not complete the login in time");
            release(&upstream);
            return;
        }
        Ok(Err(refused)) => {
            refuse(&upstream, client.as_mut(), refused, peer, session_id).await;
            release(&upstream);
            return;
        }
        Ok(Ok(admitted)) => admitted,
    };
    let Admitted {
        mut client,
        server,
        ok,
        identity,
        negotiated,
        attributes,
    } = admitted;

    let records = SessionRecords::new(&identity);
    let mut login = records.event(AuditEvent::Login, OffsetDateTime::now_utc());
    login.message = client_description(&attributes);
    if let Err(rejected) = upstream.shared.audit.submit(login).await {
        tracing::error!(reason = %rejected, record = ?rejected.record, "audit trail rejected a login record; closing the session");
        let err = ErrPacket::new(
            errors::UNKNOWN,
            "HY000",
            "warden cannot record this session in the audit trail; try again later",
        );
        let _ = send(&mut client, &err.packet(ok.seq)).await;
        release(&upstream);
        return;
    }
    if send(&mut client, &ok).await.is_err() {
        release(&upstream);
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
        "MySQL session started"
    );
    relay(&upstream, identity, negotiated, client, server, shutdown).await;
    upstream.metrics.sessions_active.dec();
    release(&upstream);
}

fn release(upstream: &MySqlUpstream) {
    upstream.active.fetch_sub(1, Ordering::Relaxed);
}

/// What the client says about itself beyond its program name, for the login record.
pub fn client_description(attributes: &[(String, String)]) -> Option<String> {
    let parts: Vec<String> = [
        "_client_name",
        "_client_version",
        "_os",
        "_platform",
        "_pid",
    ]
    .iter()
    .filter_map(|k| attribute(attributes, k).map(|v| format!("{k}={v}")))
    .collect();
    (!parts.is_empty()).then(|| format!("client: {}", parts.join(" ")))
}

/// The handshake warden sends the client: the database's, with the capabilities warden
/// relays and TLS as configured for clients, and the plugin warden offers.
fn client_handshake(upstream: &MySqlUpstream, server: &Handshake) -> Handshake {
    let mut capabilities = server.capabilities & caps::SUPPORTED & !caps::SSL;
    if upstream.client_tls.is_some() {
        capabilities |= caps::SSL;
    }
    let auth_plugin = match upstream.config.auth.mysql.plugin {
        MysqlAuthPlugin::Relay => server.auth_plugin.clone(),
        MysqlAuthPlugin::CachingSha2 => super::auth::CACHING_SHA2.to_vec(),
    };
    Handshake {
        capabilities,
        auth_plugin,
        ..server.clone()
    }
}

async fn admit(
    upstream: &MySqlUpstream,
    client: &mut Option<Stream>,
    peer: SocketAddr,
    session_id: u64,
) -> Result<Admitted, Refused> {
    let limits = &upstream.shared.limits;
    if upstream.active.fetch_add(1, Ordering::Relaxed) >= limits.max_sessions {
        return Err(Refused::error(
            0,
            ErrPacket::new(
                errors::TOO_MANY_CONNECTIONS,
                "08004",
                "Too many connections",
            ),
            "session limit reached",
            None,
        ));
    }
    let (server_handshake, server) = match greet(
        &upstream.config.server,
        limits.connect_timeout,
        limits.max_message_bytes,
    )
    .await
    {
        Ok(Greeting::Handshake(h, reader)) => (h, reader),
        Ok(Greeting::Refused(err)) => {
            let reason = format!("the database refused the connection: {}", err.message);
            return Err(Refused::error(0, err, reason, None));
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream.config.name, error = %e, "cannot reach the database");
            return Err(Refused::error(
                0,
                ErrPacket::new(
                    2013,
                    "08S01",
                    format!("warden could not open a session on the database: {e}"),
                ),
                format!("database unreachable: {e}"),
                None,
            ));
        }
    };
    let handshake = client_handshake(upstream, &server_handshake);
    let stream = client
        .as_mut()
        .expect("the client stream is there until TLS");
    stream
        .write_all(Packet::new(0, &handshake.encode()).raw())
        .await
        .map_err(|e| Refused::silent(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| Refused::silent(e.to_string()))?;

    // The client's first packet: an SSL request, or its handshake response.
    let max = limits.max_message_bytes;
    // Read exactly one packet: a client that asks for TLS sends its ClientHello right behind
    // the SSL request, and those bytes belong to the TLS layer.
    let mut stream = client.take().expect("stream");
    let first = match read_one_packet(&mut stream).await {
        Ok(p) => p,
        Err(e) => return Err(Refused::silent(e)),
    };
    let mut reader = PacketReader::new(stream, 64 * 1024);
    let mut response = decode_response(&first, client, None)?;
    let mut seq = first.last_seq.wrapping_add(1);
    if response.ssl_request {
        let (stream, _) = reader.into_parts();
        let Some(tls) = &upstream.client_tls else {
            *client = Some(stream);
            return Err(Refused::error(
                seq,
                ErrPacket::new(
                    errors::HANDSHAKE,
                    "08S01",
                    "warden does not offer TLS on this listener",
                ),
                "client asked for TLS, which is disabled",
                None,
            ));
        };
        let Stream::Plain(tcp) = stream else {
            return Err(Refused::silent("TLS requested twice"));
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        let tls_stream = acceptor
            .accept(tcp)
            .await
            .map_err(|e| Refused::silent(format!("TLS handshake failed: {e}")))?;
        reader = PacketReader::new(Stream::ServerTls(Box::new(tls_stream)), 64 * 1024);
        let second = read_client(&mut reader, client).await?;
        response = decode_response(&second, client, None)?;
        if response.ssl_request {
            return Err(Refused::silent("a second SSL request"));
        }
        seq = second.last_seq.wrapping_add(1);
    }
    let login = Login {
        user: String::from_utf8_lossy(&response.user).into_owned(),
        database: response
            .database
            .as_deref()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default(),
        attributes: response.attributes.clone(),
    };
    let (stream, rest) = reader.into_parts();
    let mut client_reader = PacketReader::with_buffered(stream, max, rest);
    let tls = client_reader.get_ref().is_tls();
    if upstream.config.client_tls.mode == ClientTlsMode::Require && !tls {
        return Err(fail(
            client_reader,
            client,
            seq,
            ErrPacket::new(
                errors::SECURE_TRANSPORT_REQUIRED,
                "HY000",
                format!(
                    "Connections using insecure transport are prohibited: warden requires TLS for \"{}\" (use --ssl / ssl-mode=REQUIRED)",
                    upstream.config.name
                ),
            ),
            "client did not use TLS, which is required",
            &login,
        ));
    }
    let asked = response.capabilities & !caps::CLIENT_ONLY;
    let capability_problem = if asked & caps::REQUIRED != caps::REQUIRED {
        Some(
            "warden needs a client that speaks the 4.1 protocol with plugin authentication"
                .to_string(),
        )
    } else if asked & (caps::COMPRESS | caps::ZSTD_COMPRESSION) != 0 {
        Some("warden does not support protocol compression; connect without compression".into())
    } else {
        let unsupported = asked & !handshake.capabilities & !caps::SSL & !caps::CLIENT_MYSQL;
        (unsupported != 0).then(|| {
            format!(
                "the client asked for protocol capabilities warden did not offer (0x{unsupported:x})"
            )
        })
    };
    if let Some(problem) = capability_problem {
        return Err(fail(
            client_reader,
            client,
            seq,
            ErrPacket::new(errors::NOT_SUPPORTED, "08S01", problem.clone()),
            &problem,
            &login,
        ));
    }
    let capabilities = asked & handshake.capabilities;

    // The response the database gets: what the client chose, TLS as configured for the database.
    let upstream_response = HandshakeResponse {
        capabilities: capabilities & !caps::SSL,
        ssl_request: false,
        ..response.clone()
    };
    let leg = UpstreamLeg {
        upstream,
        server,
        handshake: *server_handshake,
        response: upstream_response,
    };
    let outcome = match &upstream.sha2 {
        Some(sha2) => {
            caching_sha2::login(sha2, &mut client_reader, seq, &handshake.scramble, tls, leg).await
        }
        None => relay_login(&mut client_reader, seq, leg).await,
    };
    let (ok, server) = match outcome {
        Ok((AuthOutcome::Accepted(ok), server)) => (ok, server),
        Ok((AuthOutcome::Refused(err, packet), _)) => {
            *client = Some(client_reader.into_parts().0);
            return Err(Refused {
                packet: Some(Box::new(packet)),
                code: err.audit_code(),
                message: err.describe(),
                reason: "the database refused the login".into(),
                login: Some(Box::new(login)),
            });
        }
        Err(LoginError::Client(e)) => return Err(Refused::silent(e)),
        Err(LoginError::Denied { seq, reason }) => {
            let err = access_denied(&login.user, peer, true);
            return Err(fail(client_reader, client, seq, err, &reason, &login));
        }
        Err(LoginError::Upstream(e)) => {
            tracing::warn!(upstream = %upstream.config.name, error = %e, "cannot log in to the database");
            let err = ErrPacket::new(
                2013,
                "08S01",
                format!("warden could not open a session on the database: {e}"),
            );
            return Err(fail(
                client_reader,
                client,
                seq,
                err,
                &format!("database login failed: {e}"),
                &login,
            ));
        }
    };

    let cert_subject = client_reader
        .get_ref()
        .peer_certificate()
        .and_then(|c| certificate_subject(&c));
    let program = attribute(&login.attributes, "program_name")
        .or_else(|| attribute(&login.attributes, "_client_name"))
        .unwrap_or_default()
        .to_string();
    let identity = SessionIdentity {
        session_id,
        upstream: upstream.config.name.clone(),
        protocol: "mysql",
        user: login.user.clone(),
        database: login.database.clone(),
        program,
        client_addr: peer,
        client_mac: crate::neighbour::lookup(peer.ip()).map(|m| m.to_string()),
        client_host: attribute(&login.attributes, "_client_host")
            .or_else(|| attribute(&login.attributes, "client_host"))
            .or_else(|| attribute(&login.attributes, "_hostname"))
            .map(str::to_string),
        os_user: attribute(&login.attributes, "_os_user")
            .or_else(|| attribute(&login.attributes, "os_user"))
            .map(str::to_string),
        cert_subject,
        tls,
    };
    Ok(Admitted {
        client: client_reader,
        server,
        ok,
        identity,
        negotiated: Negotiated {
            capabilities,
            charset: response.charset,
        },
        attributes: login.attributes,
    })
}

/// MySQL's own words for a failed login.
pub fn access_denied(user: &str, peer: SocketAddr, password: bool) -> ErrPacket {
    ErrPacket::new(
        errors::ACCESS_DENIED,
        "28000",
        format!(
            "Access denied for user '{user}'@'{}' (using password: {})",
            peer.ip(),
            if password { "YES" } else { "NO" }
        ),
    )
}

/// The database side of a login: the greeted connection and the response it is to get.
pub struct UpstreamLeg<'a> {
    pub upstream: &'a MySqlUpstream,
    pub server: PacketReader<Stream>,
    pub handshake: Handshake,
    pub response: HandshakeResponse,
}

impl UpstreamLeg<'_> {
    /// Sends the handshake response (after TLS, as configured).
    pub async fn respond(self) -> Result<(PacketReader<Stream>, u8), UpstreamError> {
        respond(
            self.server,
            &self.handshake,
            &self.upstream.config.server,
            self.upstream.server_tls.as_ref(),
            self.response,
            self.upstream.shared.limits.max_message_bytes,
        )
        .await
    }
}

/// Why a login broke off.
pub enum LoginError {
    /// The client went away or broke the protocol: close without a word.
    Client(String),
    /// Warden itself refused the client's credentials (caching_sha2_password); the ERR
    /// packet goes out with sequence id `seq`.
    Denied { seq: u8, reason: String },
    /// The database could not be reached or broke the protocol.
    Upstream(UpstreamError),
}

impl From<ExchangeError> for LoginError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Client(e) => LoginError::Client(e.to_string()),
            other => LoginError::Upstream(UpstreamError::Protocol(other.to_string())),
        }
    }
}

/// The default login: the client's answer goes to the database, which checks it.
async fn relay_login(
    client: &mut PacketReader<Stream>,
    seq: u8,
    leg: UpstreamLeg<'_>,
) -> Result<(AuthOutcome, PacketReader<Stream>), LoginError> {
    let (mut server, _) = leg.respond().await.map_err(LoginError::Upstream)?;
    let outcome = relay_exchange(client, seq, &mut server).await?;
    Ok((outcome, server))
}

fn fail(
    reader: PacketReader<Stream>,
    client: &mut Option<Stream>,
    seq: u8,
    err: ErrPacket,
    reason: &str,
    login: &Login,
) -> Refused {
    *client = Some(reader.into_parts().0);
    Refused::error(seq, err, reason, Some(login))
}

/// Reads one small packet without reading past it.
async fn read_one_packet(stream: &mut Stream) -> Result<Packet, String> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err("the client closed before logging in".into());
        }
        Err(e) => return Err(e.to_string()),
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    if len > 64 * 1024 {
        return Err(format!("a handshake response of {len} bytes"));
    }
    let mut payload = vec![0u8; len];
    stream
        .read_exact(&mut payload)
        .await
        .map_err(|e| format!("the client closed during the handshake: {e}"))?;
    Ok(Packet::new(header[3], &payload))
}

async fn read_client(
    reader: &mut PacketReader<Stream>,
    _client: &mut Option<Stream>,
) -> Result<Packet, Refused> {
    match reader.next().await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Refused::silent("the client closed before logging in")),
        Err(e) => Err(Refused::silent(format!(
            "bad handshake response from the client: {e}"
        ))),
    }
}

fn decode_response(
    packet: &Packet,
    _client: &mut Option<Stream>,
    _login: Option<&Login>,
) -> Result<HandshakeResponse, Refused> {
    HandshakeResponse::decode(&packet.payload())
        .map_err(|e| Refused::silent(format!("bad handshake response from the client: {e}")))
}

/// Ends a connection that did not become a session: the error to the client, the audit record.
async fn refuse(
    upstream: &MySqlUpstream,
    stream: Option<&mut Stream>,
    refused: Refused,
    peer: SocketAddr,
    session_id: u64,
) {
    if let (Some(stream), Some(packet)) = (stream, &refused.packet) {
        let _ = stream.write_all(packet.raw()).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
    let Some(login) = refused.login else {
        tracing::debug!(%peer, reason = %refused.reason, "MySQL connection closed before login");
        if refused.packet.is_some() {
            upstream.metrics.login_failed.inc();
        }
        return;
    };
    upstream.metrics.login_failed.inc();
    tracing::info!(%peer, upstream = %upstream.config.name, user = %login.user, reason = %refused.reason, "login refused");
    let mut record = AuditRecord::new(
        OffsetDateTime::now_utc(),
        AuditEvent::LoginFailed,
        session_id,
        upstream.config.name.clone(),
        Protocol::Mysql,
        login.user,
        login.database,
        peer.ip(),
        peer.port(),
    );
    record.program = attribute(&login.attributes, "program_name")
        .or_else(|| attribute(&login.attributes, "_client_name"))
        .map(str::to_string);
    record.client_mac =
        crate::neighbour::lookup(peer.ip()).and_then(|m| m.to_string().parse().ok());
    record.result = AuditResult::Error;
    record.error_code = Some(refused.code);
    record.message = Some(format!("{} ({})", refused.message, refused.reason));
    if let Err(rejected) = upstream.shared.audit.submit(record).await {
        tracing::error!(reason = %rejected, record = ?rejected.record, "audit trail rejected a failed-login record");
    }
}

impl From<UpstreamError> for Refused {
    fn from(e: UpstreamError) -> Self {
        Refused::silent(e.to_string())
    }
}
