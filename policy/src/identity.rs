//! Who is on the other end of a session (PROXY-3).
//!
//! Every factor warden can establish about a client: the database user and database it logged
//! in as, the program it claims to be, where it connects from (IP, port, and MAC address when on
//! the same segment), and the subject of its TLS client certificate. Later policy rules match on
//! these; audit records carry them.

use std::net::SocketAddr;

/// The identity of one client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    /// Warden's session number, unique within the process.
    pub session_id: u64,
    /// The configured upstream (database) the session goes to.
    pub upstream: String,
    /// `postgres` or `mysql`.
    pub protocol: &'static str,
    /// Database user.
    pub user: String,
    /// Database (PostgreSQL) or default schema (MySQL).
    pub database: String,
    /// Client program: PostgreSQL `application_name`, MySQL `program_name`. Empty when the
    /// client sends none.
    pub program: String,
    /// Client address and port as seen by warden.
    pub client_addr: SocketAddr,
    /// Client MAC address (`aa:bb:cc:dd:ee:ff`), when the client is on the same L2 segment.
    pub client_mac: Option<String>,
    /// Client host name, when the client sends one (MySQL connect attributes).
    pub client_host: Option<String>,
    /// Client operating-system user, when the client sends one (MySQL connect attributes).
    pub os_user: Option<String>,
    /// Subject of the TLS client certificate, when the client presented one.
    pub cert_subject: Option<String>,
    /// Whether the client leg is encrypted.
    pub tls: bool,
}
