//! The PostgreSQL v3 protocol: framing, messages, startup and authentication, and the session
//! relay between a client and its database server; warden's own service client and, through it,
//! the encryption catalog.

pub mod accept;
pub mod auth;
pub mod cancel;
pub mod catalog_loader;
pub mod frame;
pub mod messages;
pub mod service;
pub mod session;
pub mod upstream;
