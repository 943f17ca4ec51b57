//! One MySQL client session relayed to its database session, after both sides logged in.
//!
//! The MySQL protocol is a conversation of turns: the client sends a command, the server
//! answers it completely, and only then does the next command start (the only commands without
//! an answer are COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA). So a session is one loop in one
//! task: read a command ([`commands`]), decide and forward it, then relay the answer
//! ([`results`]), counting rows and matching result sets to statements for the audit trail.
//! Everything warden does not need to look at is forwarded as the bytes that arrived; writes
//! to the client are flushed only when the server has nothing more buffered, so a result set
//! goes out in few system calls.
//!
//! Between turns warden may ask the server something itself (the session's `sql_mode` and
//! character set, see [`lexing`]) and consume the answer; the client never sees it.
//!
//! When the upstream encrypts columns, [`crypt`] plans each SQL text, seals bound parameters
//! and opens result values, and [`infile`] encrypts LOAD DATA LOCAL files.

mod commands;
pub(crate) mod crypt;
mod infile;
mod lexing;
mod results;

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use tokio::io::{ReadHalf, WriteHalf};
use warden_audit::{AuditEvent, AuditRecord, AuditResult};
use warden_policy::SessionIdentity;

use self::crypt::Turn;
use self::lexing::Lexing;
use super::constants::{caps, command};
use super::packet::{Packet, PacketError, PacketReader, PacketWriter};
use super::statements::Statements;
use crate::metrics::UpstreamMetrics;
use crate::net::Stream;
use crate::pg::session::{Shutdown, until_true};
use crate::pipeline::Shared;
use crate::pipeline::records::SessionRecords;

/// What the login settled that the relay must know.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// The capabilities both legs use.
    pub capabilities: u64,
    /// The client's character set (collation id) from its handshake response.
    pub charset: u8,
}

/// How a session ended, for the log and the audit record.
#[derive(Debug)]
pub enum SessionEnd {
    /// The client sent COM_QUIT.
    Quit,
    /// The client closed the connection without COM_QUIT.
    Disconnected,
    /// The client broke the protocol.
    ClientProtocol(String),
    /// The database closed the session.
    ServerClosed,
    /// The database broke the protocol.
    ServerProtocol(String),
    /// A COM_CHANGE_USER failed; like the server, warden closes the connection.
    ChangeUserFailed,
    /// Reading or writing a leg failed.
    Io(std::io::Error),
    /// Warden is draining and the session was between commands.
    Drained,
    /// The drain timeout ended the session.
    Forced,
    /// A LOAD DATA LOCAL file could not be encrypted: the database connection was closed in
    /// the middle of the file, so that the server aborts the statement.
    EncryptionAborted(String),
}

impl SessionEnd {
    fn describe(&self) -> (AuditResult, String) {
        match self {
            SessionEnd::Quit => (AuditResult::Ok, "client quit (COM_QUIT)".into()),
            SessionEnd::Disconnected => (
                AuditResult::Ok,
                "client closed the connection without COM_QUIT".into(),
            ),
            SessionEnd::ClientProtocol(e) => (
                AuditResult::Error,
                format!("client protocol violation: {e}"),
            ),
            SessionEnd::ServerClosed => (AuditResult::Ok, "the database closed the session".into()),
            SessionEnd::ServerProtocol(e) => (
                AuditResult::Error,
                format!("database protocol violation: {e}"),
            ),
            SessionEnd::ChangeUserFailed => (
                AuditResult::Error,
                "COM_CHANGE_USER failed; the connection was closed".into(),
            ),
            SessionEnd::Io(e) => (AuditResult::Error, format!("connection error: {e}")),
            SessionEnd::Drained => (
                AuditResult::Ok,
                "warden shut down; the session was idle".into(),
            ),
            SessionEnd::Forced => (
                AuditResult::Ok,
                "warden shut down; the drain timeout ended the session".into(),
            ),
            SessionEnd::EncryptionAborted(e) => (
                AuditResult::Error,
                format!("LOAD DATA aborted, a value could not be encrypted: {e}"),
            ),
        }
    }

    fn client(e: PacketError) -> SessionEnd {
        match e {
            PacketError::Io(e) => SessionEnd::Io(e),
            PacketError::Truncated => SessionEnd::Disconnected,
            other => SessionEnd::ClientProtocol(other.to_string()),
        }
    }

    fn server(e: PacketError) -> SessionEnd {
        match e {
            PacketError::Io(e) => SessionEnd::Io(e),
            PacketError::Truncated => SessionEnd::ServerClosed,
            other => SessionEnd::ServerProtocol(other.to_string()),
        }
    }
}

/// The state of one relayed session.
pub(super) struct Session {
    client_in: PacketReader<ReadHalf<Stream>>,
    client_out: PacketWriter<WriteHalf<Stream>>,
    server_in: PacketReader<ReadHalf<Stream>>,
    server_out: PacketWriter<WriteHalf<Stream>>,
    shared: Arc<Shared>,
    metrics: UpstreamMetrics,
    identity: SessionIdentity,
    records: SessionRecords,
    deprecate_eof: bool,
    statements: Statements,
    lexing: Lexing,
    outbox: Vec<AuditRecord>,
    /// Column encryption of the upstream, if its policy declares encrypted columns.
    encryption: Option<Arc<crate::encryption::Encryption>>,
    /// What column encryption knows about the command being answered.
    turn: Turn,
    /// The session's character set (collation id), for decrypted string columns.
    charset: u16,
    /// The sequence id the client expects on the server's next packet, when warden sent the
    /// server a different number of packets than the client sent (an encrypted LOAD DATA file).
    reply_seq: Option<u8>,
}

/// Relays `client` to `server` (of `upstream`) until either side ends the session.
pub async fn relay(
    upstream: &super::accept::MySqlUpstream,
    identity: SessionIdentity,
    negotiated: Negotiated,
    client: PacketReader<Stream>,
    server: PacketReader<Stream>,
    shutdown: Shutdown,
) -> SessionEnd {
    let started = Instant::now();
    let shared = Arc::clone(&upstream.shared);
    let metrics = upstream.metrics.clone();
    let encryption = upstream.encryption.clone();
    let max = shared.limits.max_message_bytes;
    let (client, client_buffered) = client.into_parts();
    let (server, server_buffered) = server.into_parts();
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let records = SessionRecords::new(&identity);
    let mut session = Session {
        client_in: PacketReader::with_buffered(client_read, max, client_buffered),
        client_out: PacketWriter::new(client_write),
        server_in: PacketReader::with_buffered(server_read, max, server_buffered),
        server_out: PacketWriter::new(server_write),
        shared,
        metrics,
        identity,
        records,
        deprecate_eof: negotiated.capabilities & caps::DEPRECATE_EOF != 0,
        statements: Statements::default(),
        lexing: Lexing::default(),
        outbox: Vec::new(),
        encryption,
        turn: Turn::default(),
        charset: u16::from(negotiated.charset),
        reply_seq: None,
    };
    let mut force = shutdown.force.clone();
    let end = tokio::select! {
        end = session.run(shutdown.drain.clone()) => end,
        _ = until_true(&mut force) => SessionEnd::Forced,
    };
    session.submit_records().await;

    let _ = session.client_out.shutdown().await;
    // After an aborted LOAD DATA the server is reading file data: a COM_QUIT would be read
    // as a line of the file, so the connection is closed without it.
    if !matches!(end, SessionEnd::Quit | SessionEnd::EncryptionAborted(_)) {
        let _ = session
            .server_out
            .push(&Packet::new(0, &[command::QUIT]))
            .await;
    }
    let _ = session.server_out.shutdown().await;
    match &end {
        SessionEnd::ClientProtocol(_) => session.metrics.client_protocol_errors.inc(),
        SessionEnd::ServerProtocol(_) => session.metrics.server_protocol_errors.inc(),
        _ => {}
    }
    let (result, message) = end.describe();
    tracing::info!(
        session = session.identity.session_id,
        upstream = %session.identity.upstream,
        user = %session.identity.user,
        reason = %message,
        "MySQL session ended"
    );
    let mut record = session
        .records
        .event(AuditEvent::SessionEnd, OffsetDateTime::now_utc());
    record.result = result;
    record.message = Some(message);
    record.latency_us = Some(started.elapsed().as_micros() as u64);
    if let Err(rejected) = session.shared.audit.submit(record).await {
        tracing::error!(reason = %rejected, record = ?rejected.record, "audit trail rejected a session-end record");
    }
    end
}

impl Session {
    async fn run(&mut self, mut drain: tokio::sync::watch::Receiver<bool>) -> SessionEnd {
        // The login may have changed the session's lexing (init_connect): read it first.
        if let Err(end) = self.refresh_lexing().await {
            return end;
        }
        loop {
            if !self.client_in.has_buffered_packet() {
                if let Err(e) = self.server_out.flush().await {
                    return SessionEnd::Io(e);
                }
                if let Err(e) = self.client_out.flush().await {
                    return SessionEnd::Io(e);
                }
            }
            let next = tokio::select! {
                biased;
                _ = until_true(&mut drain) => return SessionEnd::Drained,
                next = self.client_in.next() => next,
                unexpected = self.server_in.next() => {
                    // The server speaks between commands only to say it is closing the
                    // session (an ERR after KILL or a timeout): pass it on, and end.
                    return match unexpected {
                        Ok(Some(packet)) => {
                            let _ = self.client_out.send(&packet).await;
                            SessionEnd::ServerClosed
                        }
                        Ok(None) => SessionEnd::ServerClosed,
                        Err(e) => SessionEnd::server(e),
                    };
                }
            };
            let packet = match next {
                Ok(Some(packet)) => packet,
                Ok(None) => return SessionEnd::Disconnected,
                Err(e) => return SessionEnd::client(e),
            };
            let result = self.command(packet).await;
            self.submit_records().await;
            if let Err(end) = result {
                if let SessionEnd::ClientProtocol(problem) = &end {
                    let err = super::messages::ErrPacket::new(
                        super::constants::errors::PACKETS_OUT_OF_ORDER,
                        "08S01",
                        format!("warden closed the session: {problem}"),
                    );
                    let _ = self.client_out.send(&err.packet(1)).await;
                }
                return end;
            }
        }
    }

    /// Records of the statements completed by the last command.
    async fn submit_records(&mut self) {
        for record in self.outbox.drain(..) {
            if let Err(rejected) = self.shared.audit.submit(record).await {
                tracing::error!(
                    reason = %rejected,
                    record = ?rejected.record,
                    "audit trail rejected a record; warden refuses statements until it recovers"
                );
            }
        }
    }
}
