//! Prometheus metrics (OPS-3).
//!
//! One registry per process, served at `/metrics` by the admin endpoint. Hot-path counters are
//! resolved once per upstream ([`UpstreamMetrics`]) so a statement costs a few atomic adds, not
//! label lookups. Audit-trail figures are read from the audit crate's own counters when scraped.

use prometheus::core::{AtomicU64, GenericCounter};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Statement kinds counted separately; anything else is counted as `other`.
const KINDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "copy",
    "ddl",
    "transaction",
    "set",
    "show",
    "call",
    "explain",
    "utility",
    "unparsed",
    "refused",
    "other",
];

/// Every metric family warden exports.
pub struct Metrics {
    pub registry: Registry,
    sessions_active: IntGaugeVec,
    sessions_total: IntCounterVec,
    logins: IntCounterVec,
    statements: IntCounterVec,
    bytes: IntCounterVec,
    duration: HistogramVec,
    protocol_errors: IntCounterVec,
    pub audit_queue_depth: IntGauge,
    pub audit_written: IntCounter,
    pub audit_waited: IntCounter,
    pub audit_submitted: IntCounter,
    pub audit_write_errors: IntCounter,
    pub audit_healthy: IntGauge,
    pub audit_enabled: IntGauge,
    pub analysis_cache_entries: IntGauge,
    pub ready: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let sessions_active = IntGaugeVec::new(
            Opts::new("warden_sessions_active", "Client sessions open now"),
            &["upstream"],
        )
        .expect("valid metric");
        let sessions_total = IntCounterVec::new(
            Opts::new("warden_sessions_total", "Client sessions opened"),
            &["upstream"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new("warden_logins_total", "Client logins by result"),
            &["upstream", "result"],
        )
        .expect("valid metric");
        let statements = IntCounterVec::new(
            Opts::new("warden_statements_total", "Statements by kind"),
            &["upstream", "kind"],
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new("warden_bytes_total", "Bytes relayed, by direction"),
            &["upstream", "direction"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "warden_statement_duration_seconds",
                "Statement latency as seen by warden, from receipt to completion",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["upstream"],
        )
        .expect("valid metric");
        let protocol_errors = IntCounterVec::new(
            Opts::new(
                "warden_protocol_errors_total",
                "Sessions closed because a peer broke the protocol",
            ),
            &["upstream", "peer"],
        )
        .expect("valid metric");
        let audit_queue_depth = IntGauge::new(
            "warden_audit_queue_depth",
            "Audit records waiting to be written",
        )
        .expect("valid metric");
        let audit_written = IntCounter::new(
            "warden_audit_records_written_total",
            "Audit records written to the store",
        )
        .expect("valid metric");
        let audit_waited = IntCounter::new(
            "warden_audit_records_waited_total",
            "Audit records whose session waited for room in a full queue (backpressure)",
        )
        .expect("valid metric");
        let audit_submitted = IntCounter::new(
            "warden_audit_records_submitted_total",
            "Audit records handed to the trail",
        )
        .expect("valid metric");
        let audit_write_errors = IntCounter::new(
            "warden_audit_write_errors_total",
            "Failed audit store writes",
        )
        .expect("valid metric");
        let audit_healthy = IntGauge::new(
            "warden_audit_healthy",
            "1 while the audit trail accepts records, 0 when it has failed (statements are refused)",
        )
        .expect("valid metric");
        let audit_enabled = IntGauge::new(
            "warden_audit_enabled",
            "1 when the audit trail is on; 0 when [audit] enabled = false (nothing is recorded)",
        )
        .expect("valid metric");
        let analysis_cache_entries = IntGauge::new(
            "warden_analysis_cache_entries",
            "Statement analyses held in the cache",
        )
        .expect("valid metric");
        let ready = IntGauge::new("warden_ready", "1 while warden accepts new sessions")
            .expect("valid metric");
        for c in [
            Box::new(sessions_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sessions_total.clone()),
            Box::new(logins.clone()),
            Box::new(statements.clone()),
            Box::new(bytes.clone()),
            Box::new(duration.clone()),
            Box::new(protocol_errors.clone()),
            Box::new(audit_queue_depth.clone()),
            Box::new(audit_written.clone()),
            Box::new(audit_waited.clone()),
            Box::new(audit_submitted.clone()),
            Box::new(audit_write_errors.clone()),
            Box::new(audit_healthy.clone()),
            Box::new(audit_enabled.clone()),
            Box::new(analysis_cache_entries.clone()),
            Box::new(ready.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            sessions_active,
            sessions_total,
            logins,
            statements,
            bytes,
            duration,
            protocol_errors,
            audit_queue_depth,
            audit_written,
            audit_waited,
            audit_submitted,
            audit_write_errors,
            audit_healthy,
            audit_enabled,
            analysis_cache_entries,
            ready,
        }
    }

    /// Handles for one upstream, resolved once.
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            sessions_active: self.sessions_active.with_label_values(&[name]),
            sessions_total: self.sessions_total.with_label_values(&[name]),
            login_ok: self.logins.with_label_values(&[name, "ok"]),
            login_failed: self.logins.with_label_values(&[name, "failed"]),
            statements: KINDS
                .iter()
                .map(|k| self.statements.with_label_values(&[name, k]))
                .collect(),
            bytes_in: self.bytes.with_label_values(&[name, "client_to_server"]),
            bytes_out: self.bytes.with_label_values(&[name, "server_to_client"]),
            duration: self.duration.with_label_values(&[name]),
            client_protocol_errors: self.protocol_errors.with_label_values(&[name, "client"]),
            server_protocol_errors: self.protocol_errors.with_label_values(&[name, "server"]),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The metric handles of one upstream.
#[derive(Clone)]
pub struct UpstreamMetrics {
    pub sessions_active: IntGauge,
    pub sessions_total: IntCounter,
    pub login_ok: IntCounter,
    pub login_failed: IntCounter,
    statements: Vec<GenericCounter<AtomicU64>>,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub duration: Histogram,
    pub client_protocol_errors: IntCounter,
    pub server_protocol_errors: IntCounter,
}

impl UpstreamMetrics {
    /// Counts one statement of `kind` (an analysis kind label such as `ddl.create`).
    pub fn statement(&self, kind: &str) {
        let family = kind.split('.').next().unwrap_or(kind);
        let family = match family {
            "vacuum" | "analyze" | "lock" | "listen" | "notify" | "unlisten" | "prepare"
            | "execute" | "deallocate" | "grant" | "revoke" | "reset" | "comment" | "discard" => {
                "utility"
            }
            other => other,
        };
        let i = KINDS
            .iter()
            .position(|k| *k == family)
            .unwrap_or(KINDS.len() - 1);
        self.statements[i].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_labels() {
        let m = Metrics::new();
        let u = m.upstream("main");
        u.statement("select");
        u.statement("ddl.create");
        u.statement("something.new");
        u.bytes_in.inc_by(10);
        u.duration.observe(0.002);
        let text = m.render();
        assert!(text.contains("warden_statements_total{kind=\"select\",upstream=\"main\"} 1"));
        assert!(text.contains("warden_statements_total{kind=\"ddl\",upstream=\"main\"} 1"));
        assert!(text.contains("warden_statements_total{kind=\"other\",upstream=\"main\"} 1"));
        assert!(
            text.contains(
                "warden_bytes_total{direction=\"client_to_server\",upstream=\"main\"} 10"
            )
        );
        assert!(text.contains("warden_statement_duration_seconds_bucket"));
        assert!(text.contains("warden_audit_queue_depth"));
    }
}
