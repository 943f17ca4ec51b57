//! What the harness needs to know about a database to put warden in front of it.
//!
//! [`crate::pg::PgInstance`] and [`crate::mysql::MariaDbInstance`] implement it, and
//! [`crate::warden::UpstreamSpec`] is built from either the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A throwaway database server that warden can front.
pub trait UpstreamDatabase {
    /// The `protocol` value of warden's `[[upstream]]` section (`postgres`, `mysql`).
    fn protocol(&self) -> &'static str;
    /// Where the server accepts TCP connections.
    fn address(&self) -> SocketAddr;
    /// The CA certificate (PEM) that signed the server's TLS certificate.
    fn ca_cert(&self) -> &Path;
    /// The server's log files, printed when a test fails.
    fn log_files(&self) -> Vec<(String, PathBuf)>;
}
