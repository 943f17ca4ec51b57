//! md5 password authentication, from a stored md5 verifier rather than a password.
//!
//! PostgreSQL stores `md5` + hex(md5(password ‖ user)) and asks the client for
//! `md5` + hex(md5(stored-hex ‖ salt)). Holding the stored form lets warden check a client's
//! answer to its own salt and compute the answer to the database's salt. (The stored form is
//! password-equivalent for md5 authentication: protect the users file accordingly, and prefer
//! SCRAM, whose verifiers are not.)

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// An md5 verifier: the 32 lowercase hex digits after the `md5` prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Verifier {
    hex: String,
}

impl std::fmt::Debug for Md5Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Md5Verifier(..)")
    }
}

impl Md5Verifier {
    /// Parses `md5<32 hex digits>`.
    pub fn parse(text: &str) -> Option<Md5Verifier> {
        let hex = text.strip_prefix("md5")?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Md5Verifier {
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// The verifier PostgreSQL would store for `password` and `user`.
    pub fn from_password(password: &str, user: &str) -> Md5Verifier {
        let mut h = Md5::new();
        h.update(password.as_bytes());
        h.update(user.as_bytes());
        Md5Verifier {
            hex: hex::encode(h.finalize()),
        }
    }

    /// The answer to an md5 challenge with `salt`: `md5` + hex(md5(stored-hex ‖ salt)).
    pub fn response(&self, salt: &[u8; 4]) -> String {
        let mut h = Md5::new();
        h.update(self.hex.as_bytes());
        h.update(salt);
        format!("md5{}", hex::encode(h.finalize()))
    }

    /// Whether a client's answer (without its terminating NUL) to `salt` is right.
    pub fn check(&self, salt: &[u8; 4], answer: &[u8]) -> bool {
        self.response(salt).as_bytes().ct_eq(answer).into()
    }
}

/// A fresh random md5 salt.
pub fn new_salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    getrandom::fill(&mut salt).expect("the OS random source failed");
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15 stored this for user `warden_tmp_md5` with password `pencil`.
    #[test]
    fn derivation_matches_postgresql() {
        let pg = Md5Verifier::parse("md530399db8e1161380581351beeeab18ed").unwrap();
        assert_eq!(Md5Verifier::from_password("pencil", "warden_tmp_md5"), pg);
    }

    #[test]
    fn answers_are_checked() {
        let v = Md5Verifier::from_password("pencil", "alice");
        let salt = [1, 2, 3, 4];
        let answer = v.response(&salt);
        assert!(v.check(&salt, answer.as_bytes()));
        assert!(!v.check(&[4, 3, 2, 1], answer.as_bytes()));
        assert!(!v.check(&salt, b"md5"));
        assert!(Md5Verifier::parse("md5xyz").is_none());
    }
}
