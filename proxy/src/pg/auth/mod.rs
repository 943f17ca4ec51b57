//! Authentication: warden authenticates every client itself, then logs in to the database on
//! its behalf, without ever holding a cleartext password.
//!
//! `scram` and `md5` hold the protocol math; `users_file` and `verifiers` say where the
//! verifiers come from; `client` runs the exchange with a client and `crate::pg::upstream`
//! the one with the database.

pub mod client;
pub mod md5;
pub mod query;
pub mod scram;
pub mod users_file;
pub mod verifiers;

pub use md5::Md5Verifier;
pub use scram::ScramVerifier;

/// What warden holds for a user: exactly what PostgreSQL stores in `pg_authid.rolpassword`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    Scram(ScramVerifier),
    Md5(Md5Verifier),
}

impl Verifier {
    /// Parses a stored verifier; `None` for anything else (including cleartext).
    pub fn parse(text: &str) -> Option<Verifier> {
        if let Some(v) = ScramVerifier::parse(text) {
            return Some(Verifier::Scram(v));
        }
        Md5Verifier::parse(text).map(Verifier::Md5)
    }
}

/// The key material warden has after a client proved who it is, used to log in upstream.
#[derive(Clone)]
pub enum UpstreamCredential {
    /// SCRAM: the client's key recovered from its proof, with the verifier it matches.
    Scram {
        client_key: [u8; scram::KEY_LEN],
        verifier: ScramVerifier,
    },
    /// md5: the stored md5 verifier.
    Md5(Md5Verifier),
    /// A password warden was given (the auth-query user's, from the environment).
    Password(String),
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamCredential::Scram { .. } => "UpstreamCredential::Scram(..)",
            UpstreamCredential::Md5(_) => "UpstreamCredential::Md5(..)",
            UpstreamCredential::Password(_) => "UpstreamCredential::Password(..)",
        })
    }
}
