//! The MySQL / MariaDB client/server protocol: framing, the packets warden reads, login and
//! authentication, and the session relay between a client and its database server.
//!
//! It is the second protocol on the same pipeline as PostgreSQL: the same session identity,
//! the same analysis and policy decision ([`crate::pipeline::Shared`]), the same audit records
//! and metrics. Only the wire differs. Column encryption has its service login
//! ([`service`]), its catalog ([`catalog_loader`]) and its wire work in the session
//! (`session/crypt.rs`, `session/infile.rs`).

pub mod accept;
pub mod auth;
pub mod catalog_loader;
pub mod codec;
pub mod constants;
pub mod messages;
pub mod packet;
pub mod service;
pub mod session;
pub mod statements;
pub mod upstream;
