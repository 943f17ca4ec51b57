//! The warden proxy under test: finding the binary, its configuration, the running process,
//! what it exposes (metrics, audit records through its CLI), and the keyring, policy and service
//! login of column encryption.

mod audit;
mod binary;
mod config;
mod encryption;
mod metrics;
mod process;

pub use audit::{AuditRecord, parse_records, summarize};
pub use binary::{warden_binary, workspace_root};
pub use config::{ClientTlsSpec, ServerTlsSpec, UpstreamSpec, WardenConfig, q as toml_string};
pub use encryption::{ConfigDir, EncryptionFiles, MIGRATION_TIMEOUT, SERVICE_PASSWORD_ENV};
pub use metrics::{Metrics, Sample};
pub use process::{Warden, warden_cli};
