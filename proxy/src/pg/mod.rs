//! The PostgreSQL v3 protocol: framing, messages, startup and authentication, and the session
//! relay between a client and its database server.

pub mod accept;
pub mod auth;
pub mod cancel;
pub mod frame;
pub mod messages;
pub mod session;
pub mod upstream;
