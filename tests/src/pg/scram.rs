//! The client side of SCRAM-SHA-256 (RFC 5802 / RFC 7677), for raw protocol sessions.
//!
//! Robustness and authentication tests drive the protocol by hand on a socket, so they need to
//! log in without a driver. This client sends no channel binding (gs2 header `n,,`), checks that
//! the server's nonce extends its own, and verifies the server's final signature, so a proxy that
//! relays or terminates SCRAM incorrectly is caught. Passwords are ASCII in the tests, so
//! SASLprep is the identity.

use std::num::NonZeroU32;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2};

/// One SCRAM-SHA-256 exchange in progress.
#[derive(Debug)]
pub struct ScramClient {
    password: String,
    client_nonce: String,
    client_first_bare: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A new exchange for `password`.
    pub fn new(password: &str) -> ScramClient {
        let mut raw = [0u8; 18];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
        let client_nonce = BASE64.encode(raw);
        // PostgreSQL takes the user from the startup packet and ignores n=.
        let client_first_bare = format!("n=,r={client_nonce}");
        ScramClient {
            password: password.to_string(),
            client_nonce,
            client_first_bare,
            expected_server_signature: None,
        }
    }

    /// The client-first-message (for SASLInitialResponse).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes the server-first-message and returns the client-final-message with the proof.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>> {
        let server_first =
            std::str::from_utf8(server_first).context("server-first-message is not UTF-8")?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(BASE64.decode(v).context("bad salt")?),
                Some(("i", v)) => iterations = Some(v.parse::<u32>().context("bad iterations")?),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            bail!("incomplete server-first-message: {server_first}");
        };
        ensure!(
            nonce.starts_with(&self.client_nonce) && nonce.len() > self.client_nonce.len(),
            "the server nonce {nonce} does not extend the client nonce {}",
            self.client_nonce
        );
        let iterations = NonZeroU32::new(iterations).context("zero iterations")?;

        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let server_key = hmac::sign(&salted_key, b"Server Key");

        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        self.expected_server_signature = Some(server_signature.as_ref().to_vec());
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message (`v=<signature>`).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(server_final).context("server-final is not UTF-8")?;
        let Some(signature) = text.strip_prefix("v=") else {
            bail!("server-final-message is not a verifier: {text}");
        };
        let signature = BASE64.decode(signature).context("bad server signature")?;
        let expected = self
            .expected_server_signature
            .as_deref()
            .context("server-final before client-final")?;
        ensure!(
            signature == expected,
            "the server's SCRAM signature is wrong: it does not know the verifier"
        );
        Ok(())
    }
}

/// The md5 password response: `md5` + hex(md5(hex(md5(password + user)) + salt)).
pub fn md5_response(user: &str, password: &str, salt: &[u8]) -> String {
    use md5::{Digest, Md5};
    let inner = hex::encode(Md5::digest(format!("{password}{user}").as_bytes()));
    let mut outer = Md5::new();
    outer.update(inner.as_bytes());
    outer.update(salt);
    format!("md5{}", hex::encode(outer.finalize()))
}
