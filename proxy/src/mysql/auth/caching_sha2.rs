//! caching_sha2_password, terminated by warden, in front of databases that do not have it
//! (MariaDB) or whose plugin the client should not see.
//!
//! - **Full authentication** (the first login of a user, or when the fast path fails): warden
//!   asks the client for its password (`0x01 0x04`). Over TLS the client sends it in clear; on
//!   a plain connection it asks for warden's RSA public key (`0x02`), and sends the password
//!   XORed with the scramble and encrypted with RSA-OAEP (SHA-1, as MySQL clients do). Warden
//!   then logs in to the database with the database's own scramble (mysql_native_password's
//!   answer, or the cleartext when the database asks for it over TLS). On success it keeps, in
//!   memory only and for `cache_seconds`, `SHA256(SHA256(password))` (to check fast
//!   authentication) and `SHA1(password)` (to answer the database's native scramble).
//! - **Fast authentication**: the client's scramble answer is checked against the cached
//!   verifier, warden logs in upstream with the cached credential and tells the client
//!   `0x01 0x03` (success). If the database rejects the cached credential (the password
//!   changed), warden forgets it, opens a new database connection and asks the client for full
//!   authentication.
//!
//! The RSA key pair is loaded from `rsa_key` or generated when first needed; passwords and
//! hashes never touch a file or a log.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{PrivateKey, pkcs1::DecodeRsaPrivateKey};
use sha1::Sha1;
use zeroize::Zeroizing;

use super::scramble::{native_response, sha1, sha2_check, sha2_verifier};
use super::{AuthOutcome, CACHING_SHA2, CLEAR_PASSWORD, NATIVE_PASSWORD, send};
use crate::config::MysqlAuthConfig;
use crate::mysql::accept::{LoginError, UpstreamLeg};
use crate::mysql::codec::{Reader, Writer};
use crate::mysql::messages::{ErrPacket, Handshake};
use crate::mysql::packet::{Packet, PacketReader};
use crate::mysql::upstream::{Greeting, UpstreamError, greet};
use crate::net::Stream;

/// Users whose fast-auth entries are kept at most.
const MAX_ENTRIES: usize = 10_000;

/// What warden remembers about a user after a full authentication.
struct Entry {
    verifier: [u8; 32],
    sha1_password: Zeroizing<Vec<u8>>,
    expires: Instant,
}

/// The fast-auth cache and the RSA key of one upstream.
pub struct Sha2Authenticator {
    cache: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    key: OnceLock<Arc<RsaKey>>,
}

/// Warden's RSA key pair for the public-key exchange.
pub struct RsaKey {
    private: PrivateKey,
    public_pem: String,
}

impl RsaKey {
    fn new(private: PrivateKey) -> Result<RsaKey, String> {
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode the RSA public key: {e}"))?;
        Ok(RsaKey {
            private,
            public_pem,
        })
    }

    /// Reads a PEM private key (PKCS#8 or PKCS#1).
    pub fn load(path: &Path) -> Result<RsaKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the RSA key: {e}", path.display()))?;
        let private = PrivateKey::from_pkcs8_pem(&text)
            .or_else(|_| PrivateKey::from_pkcs1_pem(&text))
            .map_err(|e| format!("{}: not a PEM RSA private key: {e}", path.display()))?;
        RsaKey::new(private)
    }

    /// A fresh 2048-bit key pair.
    pub fn generate() -> Result<RsaKey, String> {
        let private = PrivateKey::new(&mut getrandom::SysRng, 2048)
            .map_err(|e| format!("cannot generate an RSA key: {e}"))?;
        RsaKey::new(private)
    }

    /// Decrypts the client's RSA-OAEP answer and undoes the scramble XOR: the password.
    pub fn password(&self, encrypted: &[u8], scramble: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut clear = Zeroizing::new(self.private.oaep_decrypt::<Sha1>(encrypted).ok()?);
        if scramble.is_empty() {
            return None;
        }
        for (i, b) in clear.iter_mut().enumerate() {
            *b ^= scramble[i % scramble.len()];
        }
        let end = clear.iter().position(|&b| b == 0).unwrap_or(clear.len());
        Some(Zeroizing::new(clear[..end].to_vec()))
    }
}

impl Sha2Authenticator {
    pub fn new(config: &MysqlAuthConfig) -> Result<Sha2Authenticator, String> {
        let key = OnceLock::new();
        if let Some(path) = &config.rsa_key {
            let _ = key.set(Arc::new(RsaKey::load(path)?));
        }
        Ok(Sha2Authenticator {
            cache: Mutex::new(HashMap::new()),
            ttl: config.cache,
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The RSA key, generated on first use (off the async threads).
    async fn key(&self) -> Result<Arc<RsaKey>, String> {
        if let Some(key) = self.key.get() {
            return Ok(key.clone());
        }
        let generated = tokio::task::spawn_blocking(RsaKey::generate)
            .await
            .map_err(|e| e.to_string())??;
        Ok(self.key.get_or_init(|| Arc::new(generated)).clone())
    }

    fn lookup(&self, user: &str, scramble: &[u8], answer: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut cache = self.lock();
        let entry = cache.get(user)?;
        if entry.expires <= Instant::now() {
            cache.remove(user);
            return None;
        }
        sha2_check(&entry.verifier, scramble, answer).then(|| entry.sha1_password.clone())
    }

    fn remember(&self, user: &str, password: &[u8]) {
        let mut cache = self.lock();
        if cache.len() >= MAX_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_ENTRIES
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            user.to_string(),
            Entry {
                verifier: sha2_verifier(password),
                sha1_password: Zeroizing::new(sha1(password)),
                expires: Instant::now() + self.ttl,
            },
        );
    }

    /// Forgets a user's fast-auth entry.
    pub fn forget(&self, user: &str) {
        self.lock().remove(user);
    }
}

/// What warden proves to the database with.
enum Credential {
    /// `SHA1(password)`, from the cache: answers mysql_native_password only.
    Sha1(Zeroizing<Vec<u8>>),
    /// The password, from a full authentication.
    Password(Zeroizing<Vec<u8>>),
}

/// Authenticates the client with caching_sha2_password and logs in to the database.
pub async fn login(
    sha2: &Sha2Authenticator,
    client: &mut PacketReader<Stream>,
    seq: u8,
    scramble: &[u8],
    tls: bool,
    leg: UpstreamLeg<'_>,
) -> Result<(AuthOutcome, PacketReader<Stream>), LoginError> {
    let user = String::from_utf8_lossy(&leg.response.user).into_owned();
    let mut seq = seq;
    let mut answer = leg.response.auth_response.clone();
    if leg.response.auth_plugin.as_deref() != Some(CACHING_SHA2) {
        // The client answered for another plugin: switch it to caching_sha2_password.
        let mut w = Writer::new();
        w.u8(0xfe).nul_str(CACHING_SHA2).nul_str(scramble);
        let (packet, next) = exchange(client, Packet::new(seq, &w.finish())).await?;
        answer = packet.payload().to_vec();
        seq = next;
    }
    let mut leg = leg;
    if !answer.is_empty()
        && let Some(cached) = sha2.lookup(&user, scramble, &answer)
    {
        let (outcome, server) = upstream_login(leg, Credential::Sha1(cached)).await?;
        match outcome {
            Accepted::Ok(ok) => {
                send(client, &Packet::new(seq, &[0x01, 0x03]))
                    .await
                    .map_err(|e| LoginError::Client(e.to_string()))?;
                return Ok((
                    AuthOutcome::Accepted(ok.with_seq(seq.wrapping_add(1))),
                    server.reader,
                ));
            }
            Accepted::Refused(_) => {
                // The password changed since it was cached: start over with full authentication.
                sha2.forget(&user);
                leg = reconnect(server.leg).await?;
            }
        }
    }

    // Full authentication.
    let (reply, next) = exchange(client, Packet::new(seq, &[0x01, 0x04])).await?;
    seq = next;
    let password = if tls {
        let payload = reply.payload();
        let end = payload
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(payload.len());
        Zeroizing::new(payload[..end].to_vec())
    } else {
        if *reply.payload() != [0x02] {
            return Err(LoginError::Denied {
                seq,
                reason: format!(
                    "the client did not ask for warden's RSA public key on an unencrypted connection (it sent {} bytes starting 0x{:02x}); connect with TLS or let the client fetch the server's public key",
                    reply.len,
                    reply.first().unwrap_or(0)
                ),
            });
        }
        let key = sha2
            .key()
            .await
            .map_err(|e| LoginError::Upstream(UpstreamError::Protocol(format!("RSA key: {e}"))))?;
        let mut w = Writer::new();
        w.u8(0x01).bytes(key.public_pem.as_bytes());
        let (encrypted, next) = exchange(client, Packet::new(seq, &w.finish())).await?;
        seq = next;
        match key.password(&encrypted.payload(), scramble) {
            Some(password) => password,
            None => {
                return Err(LoginError::Denied {
                    seq,
                    reason: "the client's RSA-encrypted password could not be decrypted".into(),
                });
            }
        }
    };
    let (outcome, server) = upstream_login(leg, Credential::Password(password.clone())).await?;
    match outcome {
        Accepted::Ok(ok) => {
            sha2.remember(&user, &password);
            Ok((AuthOutcome::Accepted(ok.with_seq(seq)), server.reader))
        }
        Accepted::Refused(err) => {
            let packet = err.packet(seq);
            Ok((AuthOutcome::Refused(err, packet), server.reader))
        }
    }
}

/// Sends `packet` to the client and reads its reply; returns it and the next sequence id.
async fn exchange(
    client: &mut PacketReader<Stream>,
    packet: Packet,
) -> Result<(Packet, u8), LoginError> {
    send(client, &packet)
        .await
        .map_err(|e| LoginError::Client(e.to_string()))?;
    let reply = client
        .expect()
        .await
        .map_err(|e| LoginError::Client(e.to_string()))?;
    let next = reply.last_seq.wrapping_add(1);
    Ok((reply, next))
}

enum Accepted {
    Ok(Packet),
    Refused(ErrPacket),
}

/// A database connection after a login attempt, with what is needed to open another.
struct LoggedIn<'a> {
    reader: PacketReader<Stream>,
    leg: LegTemplate<'a>,
}

struct LegTemplate<'a> {
    upstream: &'a crate::mysql::accept::MySqlUpstream,
    response: crate::mysql::messages::HandshakeResponse,
}

/// A new database connection for a second login attempt.
async fn reconnect(template: LegTemplate<'_>) -> Result<UpstreamLeg<'_>, LoginError> {
    let limits = &template.upstream.shared.limits;
    match greet(
        &template.upstream.config.server,
        limits.connect_timeout,
        limits.max_message_bytes,
    )
    .await
    .map_err(LoginError::Upstream)?
    {
        Greeting::Handshake(handshake, server) => Ok(UpstreamLeg {
            upstream: template.upstream,
            server,
            handshake: *handshake,
            response: template.response,
        }),
        Greeting::Refused(err) => Err(LoginError::Upstream(UpstreamError::Protocol(format!(
            "the database refused a connection: {}",
            err.message
        )))),
    }
}

/// Logs in to the database with `credential`, answering its scramble and auth switches.
async fn upstream_login(
    leg: UpstreamLeg<'_>,
    credential: Credential,
) -> Result<(Accepted, LoggedIn<'_>), LoginError> {
    let handshake: Handshake = leg.handshake.clone();
    let template = LegTemplate {
        upstream: leg.upstream,
        response: leg.response.clone(),
    };
    let mut leg = leg;
    leg.response.auth_plugin = Some(NATIVE_PASSWORD.to_vec());
    leg.response.auth_response =
        answer(NATIVE_PASSWORD, &handshake.scramble, &credential, false).unwrap_or_default();
    let (mut server, _) = leg.respond().await.map_err(LoginError::Upstream)?;
    let tls = server.get_ref().is_tls();
    loop {
        let packet = server
            .expect()
            .await
            .map_err(|e| LoginError::Upstream(UpstreamError::Packet(e)))?;
        let seq = packet.last_seq.wrapping_add(1);
        match packet.first() {
            Some(0x00) => {
                return Ok((
                    Accepted::Ok(packet),
                    LoggedIn {
                        reader: server,
                        leg: template,
                    },
                ));
            }
            Some(0xff) => {
                let err = ErrPacket::decode(&packet.payload())
                    .unwrap_or_else(|_| ErrPacket::new(1045, "28000", "access denied"));
                return Ok((
                    Accepted::Refused(err),
                    LoggedIn {
                        reader: server,
                        leg: template,
                    },
                ));
            }
            Some(0xfe) => {
                let payload = packet.payload();
                let mut r = Reader::new(&payload);
                let _ = r.u8("header");
                let plugin = r.nul_bytes().to_vec();
                let data = r.rest();
                let data = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                let Some(reply) = answer(&plugin, &data, &credential, tls) else {
                    return Err(LoginError::Upstream(UpstreamError::Protocol(format!(
                        "the database asks for the {} plugin, which warden cannot answer for a caching_sha2_password client",
                        String::from_utf8_lossy(&plugin)
                    ))));
                };
                send(&mut server, &Packet::new(seq, &reply))
                    .await
                    .map_err(|e| LoginError::Upstream(UpstreamError::Packet(e)))?;
            }
            other => {
                return Err(LoginError::Upstream(UpstreamError::Protocol(format!(
                    "unexpected packet 0x{:02x} during login",
                    other.unwrap_or(0)
                ))));
            }
        }
    }
}

/// The answer to `plugin`'s challenge `data` with `credential`, if warden can give one.
fn answer(plugin: &[u8], data: &[u8], credential: &Credential, tls: bool) -> Option<Vec<u8>> {
    match (plugin, credential) {
        (NATIVE_PASSWORD, Credential::Sha1(sha1_password)) => {
            Some(native_response(sha1_password, data))
        }
        (NATIVE_PASSWORD, Credential::Password(password)) => {
            if password.is_empty() {
                Some(Vec::new())
            } else {
                Some(native_response(&sha1(password), data))
            }
        }
        (CLEAR_PASSWORD, Credential::Password(password)) if tls => {
            let mut out = password.to_vec();
            out.push(0);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rsa_exchange_recovers_the_password() {
        let key = RsaKey::generate().unwrap();
        assert!(key.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let scramble = b"0123456789abcdefghij";
        let mut message = b"s3cret pw".to_vec();
        message.push(0);
        for (i, b) in message.iter_mut().enumerate() {
            *b ^= scramble[i % scramble.len()];
        }
        let encrypted = key
            .private
            .to_public_key()
            .oaep_encrypt::<Sha1>(&message)
            .unwrap();
        assert_eq!(
            key.password(&encrypted, scramble).unwrap().as_slice(),
            b"s3cret pw"
        );
        assert!(key.password(b"garbage", scramble).is_none());
    }

    #[test]
    fn the_cache_checks_fast_answers_and_expires() {
        let config = MysqlAuthConfig {
            cache: Duration::from_millis(50),
            ..MysqlAuthConfig::default()
        };
        let auth = Sha2Authenticator::new(&config).unwrap();
        auth.remember("u", b"pw");
        let scramble = b"abcdefghijklmnopqrst";
        let good = super::super::scramble::sha2_response(b"pw", scramble);
        let bad = super::super::scramble::sha2_response(b"px", scramble);
        assert_eq!(
            auth.lookup("u", scramble, &good)
                .as_deref()
                .map(|v| v.to_vec()),
            Some(sha1(b"pw"))
        );
        assert!(auth.lookup("u", scramble, &bad).is_none());
        assert!(auth.lookup("v", scramble, &good).is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(auth.lookup("u", scramble, &good).is_none());
    }
}
