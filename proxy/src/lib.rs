//! Warden, the database security proxy: the library behind the `warden` binary.
//!
//! `config` reads and checks the configuration file; `server` runs the listeners, the admin
//! endpoint and the signal handling; `pg` and `mysql` speak PostgreSQL and MySQL with clients
//! and databases;
//! `pipeline` is the protocol-independent path of a statement (analysis, policy decision,
//! audit record); `cli` is the command line.

pub mod admin;
pub mod cli;
pub mod config;
pub mod encryption;
pub mod logging;
pub mod metrics;
pub mod mysql;
pub mod neighbour;
pub mod net;
pub mod pg;
pub mod pipeline;
pub mod server;
pub mod tls;
