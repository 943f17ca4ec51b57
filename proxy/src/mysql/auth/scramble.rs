//! The arithmetic of MySQL's password plugins: what a client answers to a scramble, and how
//! warden checks an answer when it terminates caching_sha2_password.
//!
//! - mysql_native_password: `SHA1(pw) ⊕ SHA1(scramble ‖ SHA1(SHA1(pw)))`.
//! - caching_sha2_password (fast path): `SHA256(pw) ⊕ SHA256(SHA256(SHA256(pw)) ‖ scramble)`.
//!
//! Comparisons of secrets run in constant time.

use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// mysql_native_password's answer to `scramble`, from `SHA1(password)`.
pub fn native_response(sha1_password: &[u8], scramble: &[u8]) -> Vec<u8> {
    let stage2 = Sha1::digest(sha1_password);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    xor(sha1_password, &h.finalize())
}

/// `SHA1(password)`: what warden keeps in memory to answer a native scramble.
pub fn sha1(password: &[u8]) -> Vec<u8> {
    Sha1::digest(password).to_vec()
}

/// caching_sha2_password's fast-path answer to `scramble`.
pub fn sha2_response(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(scramble);
    xor(&stage1, &h.finalize())
}

/// `SHA256(SHA256(password))`: what warden keeps in memory to check fast authentication.
pub fn sha2_verifier(password: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(password)).into()
}

/// Whether `response` is the fast-path answer to `scramble` of the password behind `verifier`.
pub fn sha2_check(verifier: &[u8; 32], scramble: &[u8], response: &[u8]) -> bool {
    if response.len() != 32 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(verifier);
    h.update(scramble);
    let stage1 = xor(response, &h.finalize());
    let candidate: [u8; 32] = Sha256::digest(&stage1).into();
    bool::from(candidate.ct_eq(verifier))
}

/// A fresh 20-byte scramble of printable, non-NUL bytes (as servers make them).
pub fn fresh_scramble() -> Vec<u8> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    bytes.iter().map(|b| 0x21 + b % 0x5e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_answers_match_the_published_construction() {
        // The server stores SHA1(SHA1(pw)) and checks SHA1(answer ⊕ SHA1(scramble ‖ stored)).
        let scramble = b"abcdefghijklmnopqrst";
        let answer = native_response(&sha1(b"secret"), scramble);
        let stored = Sha1::digest(Sha1::digest(b"secret"));
        let mut h = Sha1::new();
        h.update(scramble);
        h.update(stored);
        let stage1 = xor(&answer, &h.finalize());
        assert_eq!(Sha1::digest(stage1), stored);
        // The well-known stored form of "secret" (PASSWORD('secret')).
        assert_eq!(
            hex::encode_upper(stored),
            "14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn sha2_fast_path_checks_only_the_right_password() {
        let scramble = fresh_scramble();
        assert_eq!(scramble.len(), 20);
        assert!(scramble.iter().all(|&b| b != 0));
        let verifier = sha2_verifier(b"pw");
        assert!(sha2_check(
            &verifier,
            &scramble,
            &sha2_response(b"pw", &scramble)
        ));
        assert!(!sha2_check(
            &verifier,
            &scramble,
            &sha2_response(b"pW", &scramble)
        ));
        assert!(!sha2_check(&verifier, &scramble, b"short"));
    }
}
