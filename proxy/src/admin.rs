//! The admin HTTP endpoint (OPS-3): `/metrics` for Prometheus, `/healthz` for liveness and
//! `/readyz` for readiness.
//!
//! `/readyz` answers 200 only while warden accepts sessions and its audit trail takes records;
//! otherwise 503 with the reason, so a load balancer stops sending clients to an instance that
//! would refuse them. With the audit trail switched off (`[audit] enabled = false`) it still
//! answers 200, and says so in the body; `warden_audit_enabled` is 0.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warden_audit::AuditSink;

use crate::metrics::Metrics;

/// What the endpoint reports on.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub audit: AuditSink,
    /// Set once every listener is bound; cleared when warden starts draining.
    pub ready: AtomicBool,
}

impl AdminState {
    /// Copies the audit trail's counters into the registry before a scrape.
    fn refresh(&self) {
        let s = self.audit.stats();
        let m = &self.metrics;
        m.audit_queue_depth.set(s.queue_depth as i64);
        for (counter, value) in [
            (&m.audit_written, s.written),
            (&m.audit_waited, s.waited),
            (&m.audit_submitted, s.submitted),
            (&m.audit_write_errors, s.write_errors),
        ] {
            counter.inc_by(value.saturating_sub(counter.get()));
        }
        m.audit_healthy
            .set(i64::from(self.audit.health().is_healthy()));
        m.audit_enabled.set(i64::from(self.audit.is_enabled()));
        m.ready.set(i64::from(self.ready.load(Ordering::Relaxed)));
    }

    fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err("not accepting sessions (starting or draining)".into());
        }
        let health = self.audit.health();
        if !health.is_healthy() {
            return Err(format!("audit trail unavailable: {health:?}"));
        }
        Ok(())
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn route(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "use GET\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            state.refresh();
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                state.metrics.render(),
            )
        }
        "/healthz" => respond(StatusCode::OK, text, "ok\n".into()),
        "/readyz" => match state.readiness() {
            Ok(()) if !state.audit.is_enabled() => respond(
                StatusCode::OK,
                text,
                "ready; audit trail DISABLED ([audit] enabled = false): statements are not recorded\n"
                    .into(),
            ),
            Ok(()) => respond(StatusCode::OK, text, "ready\n".into()),
            Err(reason) => respond(StatusCode::SERVICE_UNAVAILABLE, text, format!("{reason}\n")),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            text,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    })
}

/// Serves the endpoint on `listener` until `stop` becomes true.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = crate::pg::session::until_true(&mut stop) => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
