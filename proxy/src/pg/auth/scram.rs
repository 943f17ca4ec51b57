//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it, on both legs of a session.
//!
//! Warden never holds a password. It holds the verifier PostgreSQL itself stores
//! (`SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`). With it warden can play the server for the
//! client: the client's proof is `ClientKey XOR HMAC(StoredKey, AuthMessage)`, so warden
//! recovers `ClientKey` and checks `H(ClientKey) == StoredKey`. With the recovered `ClientKey`
//! (and the same salt and iteration count, which the database will offer) warden then plays
//! the client towards the database, proving knowledge of the same key, and checks the
//! database's signature with `ServerKey`. This is the technique PgBouncer uses; it is what
//! lets SCRAM work with TLS on both legs, where relaying the client's own messages would fail
//! channel binding (the client binds to warden's certificate, not the database's).
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`) is supported on both legs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;

/// Length of SHA-256 outputs and SCRAM keys.
pub const KEY_LEN: usize = 32;

pub const MECHANISM: &str = "SCRAM-SHA-256";
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// A SCRAM failure; the message is for logs, never for the client (who only learns that
/// authentication failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the proof does not match the verifier")]
    BadProof,
    #[error("channel binding does not match")]
    ChannelBinding,
    #[error(
        "the client says it supports channel binding but thinks the server does not (a possible downgrade)"
    )]
    Downgrade,
    #[error("the database's SCRAM signature is wrong: it does not know this user's key")]
    BadServerSignature,
    #[error("the database's nonce does not extend ours")]
    BadNonce,
    #[error(
        "the database uses a different salt or iteration count than the verifier warden holds (the password changed? refresh the users file)"
    )]
    StaleVerifier,
    #[error("the database sent a SCRAM error: {0}")]
    ServerError(String),
}

/// A SCRAM-SHA-256 verifier, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; KEY_LEN],
    pub server_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Option<ScramVerifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|&i| i > 0)?;
        let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        let stored_key = B64.decode(stored).ok()?.try_into().ok()?;
        let server_key = B64.decode(server).ok()?.try_into().ok()?;
        Some(ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Derives a verifier from a password (for warden's own auth-query login and for tests).
    pub fn from_password(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> (ScramVerifier, [u8; KEY_LEN]) {
        let mut salted = [0u8; KEY_LEN];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations.max(1)).expect("max(1) is non-zero"),
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let verifier = ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        };
        (verifier, client_key)
    }

    /// The textual form PostgreSQL stores.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, data);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

fn xor(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    for i in 0..KEY_LEN {
        out[i] = a[i] ^ b[i];
    }
    out
}

/// A fresh printable nonce (18 random bytes, base64, as PostgreSQL does).
pub fn new_nonce() -> String {
    let mut raw = [0u8; 18];
    getrandom::fill(&mut raw).expect("the OS random source failed");
    B64.encode(raw)
}

/// How a client asked to bind the channel (the gs2 header's first field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelBindingFlag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports it but believes the server does not.
    SupportedNotUsed,
    /// `p=<type>`: the client binds to the channel.
    Used(String),
}

/// The server side of one SCRAM exchange with a client.
pub struct ScramServer {
    verifier: ScramVerifier,
    /// Whether warden offered SCRAM-SHA-256-PLUS (client is on TLS).
    plus_offered: bool,
    /// `tls-server-end-point` data of warden's certificate, when on TLS.
    channel_binding: Option<Vec<u8>>,
    state: ServerState,
}

enum ServerState {
    Initial,
    SentFirst {
        client_first_bare: String,
        server_first: String,
        gs2_header: String,
        nonce: String,
        mechanism_plus: bool,
    },
    Done,
}

/// What the server side learned from a successful exchange.
pub struct ClientProofAccepted {
    /// The client's SCRAM key, recovered from its proof: lets warden log in upstream.
    pub client_key: [u8; KEY_LEN],
    /// The server-final message to send in AuthenticationSASLFinal.
    pub server_final: String,
}

impl ScramServer {
    pub fn new(verifier: ScramVerifier, channel_binding: Option<Vec<u8>>) -> Self {
        Self {
            verifier,
            plus_offered: channel_binding.is_some(),
            channel_binding,
            state: ServerState::Initial,
        }
    }

    /// Mechanisms to offer in AuthenticationSASL.
    pub fn mechanisms(&self) -> Vec<&'static str> {
        if self.plus_offered {
            vec![MECHANISM_PLUS, MECHANISM]
        } else {
            vec![MECHANISM]
        }
    }

    /// Handles the client-first message; returns the server-first message.
    pub fn client_first(&mut self, mechanism: &str, message: &[u8]) -> Result<String, ScramError> {
        let mechanism_plus = match mechanism {
            MECHANISM => false,
            MECHANISM_PLUS if self.plus_offered => true,
            _ => return Err(ScramError::Malformed("unknown or unoffered mechanism")),
        };
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        let flag = match flag {
            "n" => ChannelBindingFlag::NotSupported,
            "y" => ChannelBindingFlag::SupportedNotUsed,
            f => match f.strip_prefix("p=") {
                Some(kind) => ChannelBindingFlag::Used(kind.to_string()),
                None => return Err(ScramError::Malformed("bad channel binding flag")),
            },
        };
        match (&flag, mechanism_plus) {
            (ChannelBindingFlag::Used(kind), true) if kind == "tls-server-end-point" => {}
            (ChannelBindingFlag::Used(_), _) => return Err(ScramError::ChannelBinding),
            (_, true) => return Err(ScramError::ChannelBinding),
            // The client could bind but thinks we cannot, while we offered it: downgrade.
            (ChannelBindingFlag::SupportedNotUsed, false) if self.plus_offered => {
                return Err(ScramError::Downgrade);
            }
            _ => {}
        }
        let client_nonce = attribute(bare, 'r').ok_or(ScramError::Malformed("no client nonce"))?;
        if bare.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Malformed("bad client nonce"));
        }
        let nonce = format!("{client_nonce}{}", new_nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        let gs2_header = text[..text.len() - bare.len()].to_string();
        self.state = ServerState::SentFirst {
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            gs2_header,
            nonce,
            mechanism_plus,
        };
        Ok(server_first)
    }

    /// Handles the client-final message: checks binding and proof.
    pub fn client_final(&mut self, message: &[u8]) -> Result<ClientProofAccepted, ScramError> {
        let ServerState::SentFirst {
            client_first_bare,
            server_first,
            gs2_header,
            nonce,
            mechanism_plus,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(ScramError::Malformed("client-final out of order"));
        };
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let binding =
            attribute(without_proof, 'c').ok_or(ScramError::Malformed("no channel binding"))?;
        let final_nonce = attribute(without_proof, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        if final_nonce != nonce {
            return Err(ScramError::Malformed("nonce mismatch"));
        }
        let mut expected_binding = gs2_header.into_bytes();
        if mechanism_plus {
            let data = self
                .channel_binding
                .as_ref()
                .ok_or(ScramError::ChannelBinding)?;
            expected_binding.extend_from_slice(data);
        }
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if !bool::from(binding.ct_eq(&expected_binding)) {
            return Err(ScramError::ChannelBinding);
        }
        let proof: [u8; KEY_LEN] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 base64 bytes"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !bool::from(sha256(&client_key).ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(ClientProofAccepted {
            client_key,
            server_final: format!("v={}", B64.encode(server_signature)),
        })
    }
}

/// What the client side proves knowledge of.
#[derive(Clone)]
pub enum ScramSecret {
    /// A ClientKey recovered from a client's proof, with the verifier it matched. The database
    /// must offer the same salt and iteration count.
    Key {
        client_key: [u8; KEY_LEN],
        verifier: ScramVerifier,
    },
    /// A password (warden's own auth-query login), salted with whatever the database offers.
    Password(String),
}

/// The client side of one SCRAM exchange with a database.
pub struct ScramClient {
    secret: ScramSecret,
    nonce: String,
    gs2_header: String,
    /// The database's `tls-server-end-point` data when binding.
    channel_binding: Option<Vec<u8>>,
    client_first_bare: String,
    expected_server_signature: Option<[u8; KEY_LEN]>,
}

impl ScramClient {
    /// Starts an exchange. `channel_binding` is `Some` when warden binds to the database's TLS
    /// certificate (the database offered SCRAM-SHA-256-PLUS); `tls` says whether the leg is
    /// encrypted at all (which decides between the `n` and `y` flags).
    pub fn new(secret: ScramSecret, channel_binding: Option<Vec<u8>>, tls: bool) -> Self {
        let gs2_header = match (&channel_binding, tls) {
            (Some(_), _) => "p=tls-server-end-point,,".to_string(),
            (None, true) => "y,,".to_string(),
            (None, false) => "n,,".to_string(),
        };
        let nonce = new_nonce();
        Self {
            secret,
            client_first_bare: format!("n=,r={nonce}"),
            nonce,
            gs2_header,
            channel_binding,
            expected_server_signature: None,
        }
    }

    /// The mechanism name to announce.
    pub fn mechanism(&self) -> &'static str {
        if self.channel_binding.is_some() {
            MECHANISM_PLUS
        } else {
            MECHANISM
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.client_first_bare)
    }

    /// Handles server-first; returns client-final.
    pub fn server_first(&mut self, message: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(e) = attribute(text, 'e') {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let nonce = attribute(text, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        let salt = attribute(text, 's').ok_or(ScramError::Malformed("no salt"))?;
        let iterations = attribute(text, 'i').ok_or(ScramError::Malformed("no iteration count"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::BadNonce);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("bad iteration count"))?;
        let (client_key, verifier) = match &self.secret {
            ScramSecret::Key {
                client_key,
                verifier,
            } => {
                if salt != verifier.salt || iterations != verifier.iterations {
                    return Err(ScramError::StaleVerifier);
                }
                (*client_key, verifier.clone())
            }
            ScramSecret::Password(password) => {
                if iterations == 0 || iterations > 10_000_000 {
                    return Err(ScramError::Malformed("unreasonable iteration count"));
                }
                let (verifier, client_key) =
                    ScramVerifier::from_password(password, &salt, iterations);
                (client_key, verifier)
            }
        };
        let mut binding = self.gs2_header.as_bytes().to_vec();
        if let Some(cb) = &self.channel_binding {
            binding.extend_from_slice(cb);
        }
        let without_proof = format!("c={},r={nonce}", B64.encode(&binding));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_signature = hmac_sha256(&verifier.stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        self.expected_server_signature =
            Some(hmac_sha256(&verifier.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final.
    pub fn server_final(&self, message: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(e) = attribute(text, 'e') {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let v = attribute(text, 'v').ok_or(ScramError::Malformed("no server signature"))?;
        let v = B64
            .decode(v)
            .map_err(|_| ScramError::Malformed("server signature is not base64"))?;
        let expected = self
            .expected_server_signature
            .ok_or(ScramError::Malformed("server-final out of order"))?;
        if bool::from(v.ct_eq(&expected)) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

/// The value of attribute `name` in a comma-separated SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

/// A verifier for a user that does not exist, derived from a per-process secret so that the
/// exchange looks the same as for a real user (no user enumeration) and can never succeed.
pub fn mock_verifier(user: &str, secret: &[u8; 32]) -> ScramVerifier {
    let salt = hmac_sha256(secret, user.as_bytes());
    let mut stored_key = [0u8; KEY_LEN];
    getrandom::fill(&mut stored_key).expect("the OS random source failed");
    ScramVerifier {
        iterations: 4096,
        salt: salt[..16].to_vec(),
        stored_key,
        server_key: stored_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that knows the password, written from RFC 5802 independently of
    /// `ScramClient` (which works from a recovered key).
    fn password_client_final(
        password: &str,
        client_first_bare: &str,
        gs2_header: &str,
        cb: &[u8],
        server_first: &str,
    ) -> (String, [u8; KEY_LEN]) {
        let salt = B64.decode(attribute(server_first, 's').unwrap()).unwrap();
        let iterations: u32 = attribute(server_first, 'i').unwrap().parse().unwrap();
        let nonce = attribute(server_first, 'r').unwrap();
        let mut salted = [0u8; KEY_LEN];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let mut binding = gs2_header.as_bytes().to_vec();
        binding.extend_from_slice(cb);
        let without_proof = format!("c={},r={nonce}", B64.encode(&binding));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let proof = xor(&client_key, &hmac_sha256(&stored_key, auth.as_bytes()));
        let server_sig = hmac_sha256(&hmac_sha256(&salted, b"Server Key"), auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            server_sig,
        )
    }

    #[test]
    fn verifier_text_round_trips() {
        let (v, _) = ScramVerifier::from_password("pencil", b"0123456789abcdef", 4096);
        assert_eq!(ScramVerifier::parse(&v.to_text()), Some(v));
        assert!(ScramVerifier::parse("md5abc").is_none());
        assert!(ScramVerifier::parse("SCRAM-SHA-256$0:AAAA$AA==:AA==").is_none());
    }

    /// A verifier produced by PostgreSQL 15 for password "pencil" (SET password_encryption =
    /// 'scram-sha-256'; CREATE ROLE r PASSWORD 'pencil'), checked against our derivation.
    #[test]
    fn derivation_matches_postgresql() {
        let pg = "SCRAM-SHA-256$4096:QJAPO3yW40sMqM8LxObOKw==$bAAlFoCdAtnD/2rndy87yvJc/Tp/2b1IAVjKPGNgc3M=:N+dI4iBZdtHIOiD9bBi7QsPRBRWpYRunVLzOtHXX6bU=";
        let v = ScramVerifier::parse(pg).unwrap();
        let (ours, _) = ScramVerifier::from_password("pencil", &v.salt, v.iterations);
        assert_eq!(ours.to_text(), pg);
    }

    fn run_exchange(
        password: &str,
        cb_server: Option<Vec<u8>>,
        flag: &str,
        mech: &str,
        cb_client: &[u8],
    ) -> Result<[u8; KEY_LEN], ScramError> {
        let (v, client_key) = ScramVerifier::from_password("pencil", b"saltsaltsaltsalt", 4096);
        let mut server = ScramServer::new(v, cb_server);
        let bare = "n=,r=rOprNGfwEbeRWgbNEkqO";
        let first = format!("{flag}{bare}");
        let server_first = server.client_first(mech, first.as_bytes())?;
        let (client_final, server_sig) =
            password_client_final(password, bare, flag, cb_client, &server_first);
        let accepted = server.client_final(client_final.as_bytes())?;
        assert_eq!(
            accepted.server_final,
            format!("v={}", B64.encode(server_sig))
        );
        assert_eq!(accepted.client_key, client_key);
        Ok(accepted.client_key)
    }

    #[test]
    fn server_accepts_the_right_password_and_recovers_the_client_key() {
        run_exchange("pencil", None, "n,,", MECHANISM, b"").unwrap();
        assert_eq!(
            run_exchange("pencil2", None, "n,,", MECHANISM, b""),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn channel_binding_is_checked_and_downgrades_refused() {
        let cb = b"certificate-hash".to_vec();
        run_exchange(
            "pencil",
            Some(cb.clone()),
            "p=tls-server-end-point,,",
            MECHANISM_PLUS,
            &cb,
        )
        .unwrap();
        assert_eq!(
            run_exchange(
                "pencil",
                Some(cb.clone()),
                "p=tls-server-end-point,,",
                MECHANISM_PLUS,
                b"other"
            ),
            Err(ScramError::ChannelBinding)
        );
        assert_eq!(
            run_exchange("pencil", Some(cb.clone()), "y,,", MECHANISM, b""),
            Err(ScramError::Downgrade)
        );
        // Without TLS the client may say `y`: the server offered nothing to bind to.
        run_exchange("pencil", None, "y,,", MECHANISM, b"").unwrap();
        // And `n` is always allowed with the plain mechanism.
        run_exchange("pencil", Some(cb), "n,,", MECHANISM, b"").unwrap();
    }

    #[test]
    fn client_and_server_halves_agree_and_signatures_are_checked() {
        let (v, client_key) = ScramVerifier::from_password("pencil", b"saltsaltsaltsalt", 4096);
        for cb in [None, Some(b"binding".to_vec())] {
            let secret = ScramSecret::Key {
                client_key,
                verifier: v.clone(),
            };
            let mut client = ScramClient::new(secret, cb.clone(), true);
            let mut server = ScramServer::new(v.clone(), cb.clone());
            let server_first =
                server.client_first(client.mechanism(), client.client_first().as_bytes());
            let server_first = match (&cb, server_first) {
                (_, Ok(s)) => s,
                (None, Err(ScramError::Downgrade)) => unreachable!(),
                (_, Err(e)) => panic!("{e}"),
            };
            let client_final = client.server_first(server_first.as_bytes()).unwrap();
            let accepted = server.client_final(client_final.as_bytes()).unwrap();
            client
                .server_final(accepted.server_final.as_bytes())
                .unwrap();
            assert!(client.server_final(b"v=AAAA").is_err());
        }
    }

    #[test]
    fn a_password_client_logs_in_against_a_verifier() {
        let (v, _) = ScramVerifier::from_password("pencil", b"saltsaltsaltsalt", 4096);
        let mut client = ScramClient::new(ScramSecret::Password("pencil".into()), None, false);
        let mut server = ScramServer::new(v, None);
        let sf = server
            .client_first(client.mechanism(), client.client_first().as_bytes())
            .unwrap();
        let cf = client.server_first(sf.as_bytes()).unwrap();
        let accepted = server.client_final(cf.as_bytes()).unwrap();
        client
            .server_final(accepted.server_final.as_bytes())
            .unwrap();
    }

    #[test]
    fn a_stale_verifier_is_reported() {
        let (v, client_key) = ScramVerifier::from_password("pencil", b"saltsaltsaltsalt", 4096);
        let secret = ScramSecret::Key {
            client_key,
            verifier: v,
        };
        let mut client = ScramClient::new(secret, None, false);
        let first = client.client_first();
        let nonce = attribute(&first, 'r').unwrap();
        let server_first = format!("r={nonce}XYZ,s={},i=4096", B64.encode(b"another-salt"));
        assert_eq!(
            client.server_first(server_first.as_bytes()),
            Err(ScramError::StaleVerifier)
        );
    }

    #[test]
    fn mock_verifiers_never_accept() {
        let v = mock_verifier("nobody", &[7; 32]);
        let mut server = ScramServer::new(v, None);
        let sf = server.client_first(MECHANISM, b"n,,n=,r=abc").unwrap();
        let (cf, _) = password_client_final("", "n=,r=abc", "n,,", b"", &sf);
        assert_eq!(
            server.client_final(cf.as_bytes()).err(),
            Some(ScramError::BadProof)
        );
    }
}
