//! One client session relayed to its database session, after both sides are logged in.
//!
//! The two directions run concurrently in the session's task ([`frontend`] client to server,
//! [`backend`] server to client), each with its own buffered reader and writer, sharing the
//! [`state::Conversation`]. Running them independently is what keeps a pipelining client or a
//! large COPY from deadlocking against a database that is busy writing results; bounded
//! buffers on both sides mean a slow client only slows its own session.

pub mod backend;
pub mod copy;
pub mod crypt;
pub mod frontend;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use time::OffsetDateTime;
use tokio::sync::watch;
use warden_audit::{AuditEvent, AuditResult};
use warden_policy::SessionIdentity;

use self::backend::{Backend, BackendEnd};
use self::frontend::{Frontend, FrontendEnd};
use self::state::Conversation;
use crate::metrics::UpstreamMetrics;
use crate::net::Stream;
use crate::pg::frame::{FrameReader, FrameWriter, Peer};
use crate::pg::messages::backend::{ErrorFields, sqlstate};
use crate::pg::messages::frontend::terminate;
use crate::pipeline::Shared;
use crate::pipeline::records::SessionRecords;

/// What a session needs from the rest of warden.
pub struct SessionContext {
    pub shared: Arc<Shared>,
    pub metrics: UpstreamMetrics,
    pub identity: SessionIdentity,
    /// Column encryption of the upstream, if its policy declares encrypted columns.
    pub encryption: Option<Arc<crate::encryption::Encryption>>,
}

/// Signals from the server to its sessions.
#[derive(Clone)]
pub struct Shutdown {
    /// `true` once warden drains: idle sessions end, busy ones end when they become idle.
    pub drain: watch::Receiver<bool>,
    /// `true` once the drain timeout passed: every session ends now.
    pub force: watch::Receiver<bool>,
}

/// How a session ended, for the log and the audit record.
#[derive(Debug)]
pub enum SessionEnd {
    Frontend(FrontendEnd),
    Backend(BackendEnd),
    Forced,
}

impl SessionEnd {
    fn describe(&self) -> (AuditResult, String) {
        match self {
            SessionEnd::Frontend(FrontendEnd::Terminated) => {
                (AuditResult::Ok, "client terminated the session".into())
            }
            SessionEnd::Frontend(FrontendEnd::Disconnected) => (
                AuditResult::Ok,
                "client closed the connection without terminating".into(),
            ),
            SessionEnd::Frontend(FrontendEnd::Drained)
            | SessionEnd::Backend(BackendEnd::Drained) => (
                AuditResult::Ok,
                "warden shut down; the session was idle".into(),
            ),
            SessionEnd::Frontend(FrontendEnd::Protocol(e)) => (
                AuditResult::Error,
                format!("client protocol violation: {e}"),
            ),
            SessionEnd::Frontend(FrontendEnd::TooMuch(what)) => (
                AuditResult::Error,
                format!("client exceeded warden's limit on {what}"),
            ),
            SessionEnd::Frontend(FrontendEnd::Io(e)) => {
                (AuditResult::Error, format!("connection error: {e}"))
            }
            SessionEnd::Backend(BackendEnd::ServerClosed) => {
                (AuditResult::Ok, "the database closed the session".into())
            }
            SessionEnd::Backend(BackendEnd::Protocol(e)) => (
                AuditResult::Error,
                format!("database protocol violation: {e}"),
            ),
            SessionEnd::Backend(BackendEnd::Desync(e)) => (
                AuditResult::Error,
                format!("warden lost track of the session ({e}); closed to be safe"),
            ),
            SessionEnd::Backend(BackendEnd::Io(e)) => {
                (AuditResult::Error, format!("connection error: {e}"))
            }
            SessionEnd::Forced => (
                AuditResult::Ok,
                "warden shut down; the drain timeout ended the session".into(),
            ),
        }
    }

    /// The FATAL error the client should get, if it is still there to read one.
    fn client_error(&self) -> Option<ErrorFields> {
        match self {
            SessionEnd::Frontend(FrontendEnd::Protocol(e)) => Some(ErrorFields::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("protocol violation: {e}"),
            )),
            SessionEnd::Frontend(FrontendEnd::TooMuch(what)) => Some(ErrorFields::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("too many {what}: warden closed the session"),
            )),
            SessionEnd::Backend(BackendEnd::Protocol(_))
            | SessionEnd::Backend(BackendEnd::Desync(_)) => Some(ErrorFields::fatal(
                sqlstate::INTERNAL_ERROR,
                "warden closed the session: the database's replies did not match the session's state",
            )),
            SessionEnd::Frontend(FrontendEnd::Drained)
            | SessionEnd::Backend(BackendEnd::Drained)
            | SessionEnd::Forced => Some(ErrorFields::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because warden is shutting down",
            )),
            _ => None,
        }
    }
}

/// Resolves once the flag is `true`; never, if its sender is gone while it is `false`.
pub async fn until_true(flag: &mut watch::Receiver<bool>) {
    loop {
        if *flag.borrow_and_update() {
            return;
        }
        if flag.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Relays `client` to `server` until either side ends the session.
pub async fn relay(
    ctx: SessionContext,
    client: Stream,
    client_buffered: BytesMut,
    server: Stream,
    server_buffered: BytesMut,
    parameters: &[(String, String)],
    shutdown: Shutdown,
) -> SessionEnd {
    let started = Instant::now();
    let max = ctx.shared.limits.max_message_bytes;
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let mut conversation = Conversation::new();
    for (name, value) in parameters {
        conversation.parameter(name, value);
    }
    let state = Mutex::new(conversation);
    let records = SessionRecords::new(&ctx.identity);
    let mut frontend = Frontend {
        reader: FrameReader::with_buffered(client_read, Peer::Client, max, client_buffered),
        writer: FrameWriter::new(server_write),
        state: &state,
        ctx: &ctx,
        drain: shutdown.drain.clone(),
        copy_in: None,
    };
    let mut backend = Backend::new(
        FrameReader::with_buffered(server_read, Peer::Server, max, server_buffered),
        FrameWriter::new(client_write),
        &state,
        &ctx,
        records.clone(),
        shutdown.drain.clone(),
    );
    let mut force = shutdown.force.clone();
    let end = tokio::select! {
        end = frontend.run() => SessionEnd::Frontend(end),
        end = backend.run() => SessionEnd::Backend(end),
        _ = until_true(&mut force) => SessionEnd::Forced,
    };

    // Tell the client why, when it should hear it, then close both sides.
    if let Some(error) = end.client_error() {
        let _ = backend.writer.push_frame(&error.encode()).await;
    }
    let _ = backend.writer.shutdown().await;
    if !matches!(end, SessionEnd::Frontend(FrontendEnd::Terminated)) {
        let _ = frontend.writer.push_frame(&terminate()).await;
    }
    let _ = frontend.writer.shutdown().await;

    match &end {
        SessionEnd::Frontend(FrontendEnd::Protocol(_) | FrontendEnd::TooMuch(_)) => {
            ctx.metrics.client_protocol_errors.inc()
        }
        SessionEnd::Backend(BackendEnd::Protocol(_) | BackendEnd::Desync(_)) => {
            ctx.metrics.server_protocol_errors.inc()
        }
        _ => {}
    }
    let (result, message) = end.describe();
    tracing::info!(
        session = ctx.identity.session_id,
        upstream = %ctx.identity.upstream,
        user = %ctx.identity.user,
        reason = %message,
        "session ended"
    );
    let mut record = backend
        .records
        .event(AuditEvent::SessionEnd, OffsetDateTime::now_utc());
    record.result = result;
    record.message = Some(message);
    record.latency_us = Some(started.elapsed().as_micros() as u64);
    if let Err(rejected) = ctx.shared.audit.submit(record).await {
        tracing::error!(reason = %rejected, record = ?rejected.record, "audit trail rejected a session-end record");
    }
    end
}
