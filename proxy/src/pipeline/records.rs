//! Building audit records from a session's identity and a statement's facts (DLP-6).
//!
//! A session builds its identity part once ([`SessionRecords::new`]); each statement then
//! costs one clone of that template plus its own fields.

use std::time::Duration;

use time::OffsetDateTime;
use warden_analysis::{Analysis, StatementFacts};
use warden_audit::{AuditEvent, AuditRecord, AuditResult, MacAddr, Protocol};
use warden_policy::{Refusal, SessionIdentity};

/// How a statement ended, as far as the audit record is concerned.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub rows: Option<u64>,
    pub result_bytes: Option<u64>,
    pub latency: Duration,
    pub error: Option<(String, String)>,
    /// Set when warden refused the statement.
    pub refused: Option<Refusal>,
    /// `Some(rule)` when the statement was rewritten by a rule.
    pub rewritten_by: Option<String>,
}

/// The identity part of every record of one session.
#[derive(Clone)]
pub struct SessionRecords {
    template: AuditRecord,
}

impl SessionRecords {
    pub fn new(identity: &SessionIdentity) -> SessionRecords {
        let protocol = match identity.protocol {
            "mysql" => Protocol::Mysql,
            _ => Protocol::Postgres,
        };
        let mut template = AuditRecord::new(
            OffsetDateTime::now_utc(),
            AuditEvent::Statement,
            identity.session_id,
            identity.upstream.clone(),
            protocol,
            identity.user.clone(),
            identity.database.clone(),
            identity.client_addr.ip(),
            identity.client_addr.port(),
        );
        template.client_mac = identity
            .client_mac
            .as_deref()
            .and_then(|m| m.parse::<MacAddr>().ok());
        template.program = (!identity.program.is_empty()).then(|| identity.program.clone());
        template.client_host = identity.client_host.clone();
        template.os_user = identity.os_user.clone();
        template.tls_subject = identity.cert_subject.clone();
        SessionRecords { template }
    }

    /// The program changed (PostgreSQL reports `application_name` when a client sets it).
    pub fn set_program(&mut self, program: &str) {
        self.template.program = (!program.is_empty()).then(|| program.to_string());
    }

    /// A record of `event` at `time` with the identity filled in.
    pub fn event(&self, event: AuditEvent, time: OffsetDateTime) -> AuditRecord {
        let mut r = self.template.clone();
        r.event = event;
        r.time = time;
        r
    }

    /// The record of one statement: `facts` when the analysis split the text into statements,
    /// otherwise the whole text's analysis stands for it.
    pub fn statement(
        &self,
        time: OffsetDateTime,
        analysis: &Analysis,
        facts: Option<&StatementFacts>,
        completion: &Completion,
    ) -> AuditRecord {
        let mut r = self.event(AuditEvent::Statement, time);
        match facts {
            Some(f) => {
                r.statement_kind = Some(f.kind.as_str().to_string());
                r.fingerprint = Some(f.fingerprint.to_string());
                r.sql = Some(f.redacted_sql.clone());
                r.tables = f.tables().iter().map(|t| t.to_string()).collect();
                let mut columns: Vec<String> = f
                    .columns_read
                    .iter()
                    .chain(&f.columns_written)
                    .map(|c| c.to_string())
                    .collect();
                columns.sort();
                columns.dedup();
                r.columns = columns;
            }
            None => {
                r.statement_kind = Some("unparsed".into());
                r.sql = Some(analysis.redacted_sql.clone());
                r.statement_count = Some(analysis.statements.len().max(1) as u32);
            }
        }
        r.rows = completion.rows;
        r.result_bytes = completion.result_bytes;
        r.latency_us = Some(completion.latency.as_micros().min(u64::MAX as u128) as u64);
        if let Some(refusal) = &completion.refused {
            r.result = AuditResult::Refused;
            r.decision = Some("refuse".into());
            r.rule = Some(refusal.rule.clone());
            r.error_code = Some(refusal.sqlstate.clone());
            r.message = Some(refusal.message.clone());
        } else if let Some((code, message)) = &completion.error {
            r.result = AuditResult::Error;
            r.error_code = Some(code.clone());
            r.message = Some(message.clone());
        }
        if let Some(rule) = &completion.rewritten_by {
            r.decision = Some("rewrite".into());
            r.rule = Some(rule.clone());
        }
        r
    }
}
