//! PostgreSQL: throwaway clusters, roles, connection targets, real clients and the raw protocol.

mod clients;
mod instance;
mod roles;
mod scram;
mod session;
mod target;
mod values;
pub mod wire;

pub use clients::{CLIENT_TIMEOUT, PgbenchReport, pgbench, pgbench_report, psql, python};
pub use instance::{MD5_GROUP, PgInstance, SUPERUSER, bin_dir, clear_libpq_env};
pub use roles::{PasswordAuth, Role, password_for};
pub use scram::{ScramClient, md5_response};
pub use session::Session;
pub use target::{ClientTls, ConnectOptions, Login, Target, Via, conninfo_value};
pub use values::{RawValue, columns_of, raw_rows, simple_summary, sqlstate};
