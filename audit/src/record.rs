//! The audit record: what the proxy knows about one event, as it hands it to the trail.
//!
//! An [`AuditRecord`] is a plain struct the proxy fills once per login, statement and session
//! end (DLP-6). The trail adds a sequence number and a hash when it writes it; what comes back
//! from the store is a [`StoredRecord`]. The field set is the schema: the store's columns, the
//! hash chain's canonical encoding and the JSON/CSV exports all list these fields in this order.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What happened.
///
/// Stored and hashed by its name ([`AuditEvent::as_str`]), so new kinds can be added without
/// changing how existing records hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A client authenticated and its session began.
    Login,
    /// A client failed to authenticate.
    LoginFailed,
    /// A statement (or a multi-statement string the proxy could not split) ran or was refused.
    Statement,
    /// A session ended, for whatever reason (client quit, error, proxy shutdown).
    SessionEnd,
}

impl AuditEvent {
    /// Every event kind, in a fixed order.
    pub const ALL: [AuditEvent; 4] = [
        AuditEvent::Login,
        AuditEvent::LoginFailed,
        AuditEvent::Statement,
        AuditEvent::SessionEnd,
    ];

    /// The stored name: `login`, `login_failed`, `statement`, `session_end`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Login => "login",
            AuditEvent::LoginFailed => "login_failed",
            AuditEvent::Statement => "statement",
            AuditEvent::SessionEnd => "session_end",
        }
    }
}

/// How the event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditResult {
    /// Succeeded.
    Ok,
    /// The database (or the authentication step) reported an error.
    Error,
    /// Warden refused it (policy, firewall, unparseable SQL on protected objects).
    Refused,
}

impl AuditResult {
    /// Every result, in a fixed order.
    pub const ALL: [AuditResult; 3] = [AuditResult::Ok, AuditResult::Error, AuditResult::Refused];

    /// The stored name: `ok`, `error`, `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Error => "error",
            AuditResult::Refused => "refused",
        }
    }
}

/// The wire protocol of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protocol {
    /// PostgreSQL v3 (also openGauss, KingbaseES, GaussDB).
    Postgres,
    /// MySQL / MariaDB (also OceanBase, TiDB, GoldenDB).
    Mysql,
}

impl Protocol {
    /// The stored name: `postgres`, `mysql`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }
}

macro_rules! named_enum_parse {
    ($ty:ident, $what:literal, [$($variant:ident),+]) => {
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s == $ty::$variant.as_str() { return Ok($ty::$variant); })+
                Err(UnknownName { what: $what, name: s.to_owned() })
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
named_enum_parse!(
    AuditEvent,
    "event",
    [Login, LoginFailed, Statement, SessionEnd]
);
named_enum_parse!(AuditResult, "result", [Ok, Error, Refused]);
named_enum_parse!(Protocol, "protocol", [Postgres, Mysql]);

/// A name that is not one of the known events, results or protocols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    /// Which kind of name (`event`, `result`, `protocol`).
    pub what: &'static str,
    /// The name given.
    pub name: String,
}

/// A 48-bit hardware (MAC) address, written `aa:bb:cc:dd:ee:ff` (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = UnknownName;
    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownName {
            what: "MAC address",
            name: s.to_owned(),
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One audited event, as the proxy fills it.
///
/// Optional fields are `None` when the event has no such thing (a login has no SQL) or the
/// client did not send it (MySQL sends the client host and OS user, PostgreSQL does not).
/// `time` is kept to the microsecond: finer precision is truncated when the record is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// When the event happened (for a statement: when the proxy received it), UTC.
    #[serde(with = "crate::timefmt::serde_micros")]
    pub time: OffsetDateTime,
    /// What happened.
    pub event: AuditEvent,
    /// The proxy's session id: every record of one client connection carries the same id.
    pub session_id: u64,
    /// Which configured upstream database (the `[[upstream]]` name).
    pub upstream: String,
    /// The session's wire protocol.
    pub protocol: Protocol,
    /// Database user name the client authenticated (or tried to authenticate) as.
    pub user: String,
    /// Database (PostgreSQL) or default schema (MySQL) of the session; empty when none.
    pub database: String,
    /// Client IP address as the proxy saw it.
    pub client_ip: IpAddr,
    /// Client TCP port.
    pub client_port: u16,
    /// Client MAC address, when the client is on the proxy's L2 segment.
    pub client_mac: Option<MacAddr>,
    /// Client program: PostgreSQL `application_name`, MySQL `program_name` / `_client_name`.
    pub program: Option<String>,
    /// Client host name, when the client sends one (MySQL connect attributes).
    pub client_host: Option<String>,
    /// Operating-system user on the client, when the client sends one.
    pub os_user: Option<String>,
    /// Subject of the client's TLS certificate, when it presented one (mTLS).
    pub tls_subject: Option<String>,
    /// Statement kind: `select`, `insert`, `ddl.create`, `unparsed`, …; `None` for non-statements.
    pub statement_kind: Option<String>,
    /// Statement fingerprint (hex): equal for statements that differ only in literals.
    pub fingerprint: Option<String>,
    /// The SQL text with its literals redacted (the proxy redacts before submitting).
    pub sql: Option<String>,
    /// Number of statements in `sql` when the proxy audited a multi-statement string as one record.
    pub statement_count: Option<u32>,
    /// Tables (and views) the statement touches, as named (qualified where the SQL qualified them).
    pub tables: Vec<String>,
    /// Columns the statement touches, `table.column` where known.
    pub columns: Vec<String>,
    /// Sensitive data sets the statement touches (filled by the policy engine).
    pub datasets: Vec<String>,
    /// Rows returned (queries) or affected (DML).
    pub rows: Option<u64>,
    /// Bytes of result data sent to the client.
    pub result_bytes: Option<u64>,
    /// Time from receiving the statement to its completion, in microseconds.
    pub latency_us: Option<u64>,
    /// How it ended.
    pub result: AuditResult,
    /// SQLSTATE (PostgreSQL) or error number (MySQL) when it failed.
    pub error_code: Option<String>,
    /// Error or refusal text.
    pub message: Option<String>,
    /// Policy decision (e.g. `allow`, `mask`, `refuse`), filled by the policy engine.
    pub decision: Option<String>,
    /// The policy rule that made the decision.
    pub rule: Option<String>,
}

impl AuditRecord {
    /// A record with the identity fields set and everything else empty: `event` at `time`,
    /// result `ok`. The proxy fills the rest field by field.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        time: OffsetDateTime,
        event: AuditEvent,
        session_id: u64,
        upstream: impl Into<String>,
        protocol: Protocol,
        user: impl Into<String>,
        database: impl Into<String>,
        client_ip: IpAddr,
        client_port: u16,
    ) -> Self {
        AuditRecord {
            time,
            event,
            session_id,
            upstream: upstream.into(),
            protocol,
            user: user.into(),
            database: database.into(),
            client_ip,
            client_port,
            client_mac: None,
            program: None,
            client_host: None,
            os_user: None,
            tls_subject: None,
            statement_kind: None,
            fingerprint: None,
            sql: None,
            statement_count: None,
            tables: Vec::new(),
            columns: Vec::new(),
            datasets: Vec::new(),
            rows: None,
            result_bytes: None,
            latency_us: None,
            result: AuditResult::Ok,
            error_code: None,
            message: None,
            decision: None,
            rule: None,
        }
    }

    /// `time` in whole microseconds since the Unix epoch (what the store keeps).
    pub fn time_micros(&self) -> i64 {
        crate::timefmt::to_micros(self.time)
    }
}

/// A record as read back from the store: the record plus its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Position in the chain: 1 for the first record ever written to this store, +1 per record.
    pub seq: u64,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// SM3 chain hash of this record (hex), see the crate README.
    pub hash: String,
}
