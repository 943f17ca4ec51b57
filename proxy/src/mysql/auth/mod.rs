//! MySQL authentication through warden (see docs/ARCHITECTURE.md, "MySQL authentication").
//!
//! Warden's handshake carries the database's own scramble, so in the default `relay` mode the
//! client's answer (mysql_native_password, MariaDB's client_ed25519, or any other plugin the
//! database asks for with an auth switch) is relayed to the database, which checks it: warden
//! stores nothing. [`relay_exchange`] carries that exchange, renumbering packets because the
//! two legs count differently when only one of them uses TLS. With `caching_sha2_password`
//! warden terminates the plugin itself ([`caching_sha2`]).

pub mod caching_sha2;
pub mod scramble;

use super::messages::ErrPacket;
use super::packet::{Packet, PacketError, PacketReader};
use crate::net::Stream;
use tokio::io::AsyncWriteExt;

pub const NATIVE_PASSWORD: &[u8] = b"mysql_native_password";
pub const CACHING_SHA2: &[u8] = b"caching_sha2_password";
pub const CLEAR_PASSWORD: &[u8] = b"mysql_clear_password";
pub const ED25519: &[u8] = b"client_ed25519";

/// How an authentication exchange ended.
pub enum AuthOutcome {
    /// The database accepted the login; this is its OK packet, numbered for the client.
    Accepted(Packet),
    /// The database refused the login; this is its ERR packet, numbered for the client.
    Refused(ErrPacket, Packet),
}

/// Why an authentication exchange broke off.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("the client: {0}")]
    Client(PacketError),
    #[error("the database: {0}")]
    Server(PacketError),
    #[error("the database sent an unexpected packet during authentication (0x{0:02x})")]
    Unexpected(u8),
}

/// Relays an authentication exchange after the handshake response (or COM_CHANGE_USER) went
/// to the database. `client_seq` is the sequence id the client expects next.
pub async fn relay_exchange(
    client: &mut PacketReader<Stream>,
    mut client_seq: u8,
    server: &mut PacketReader<Stream>,
) -> Result<AuthOutcome, ExchangeError> {
    loop {
        let packet = server.expect().await.map_err(ExchangeError::Server)?;
        let out = packet.with_seq(client_seq);
        client_seq = out.last_seq.wrapping_add(1);
        match packet.first() {
            Some(0x00) => return Ok(AuthOutcome::Accepted(out)),
            Some(0xff) => {
                let err = ErrPacket::decode(&packet.payload())
                    .unwrap_or_else(|_| ErrPacket::new(1045, "28000", "access denied"));
                return Ok(AuthOutcome::Refused(err, out));
            }
            // Auth switch request, or more data for the plugin.
            Some(0xfe) | Some(0x01) => {
                send(client, &out).await.map_err(ExchangeError::Client)?;
                // caching_sha2_password's "fast authentication succeeded": the OK follows.
                if *packet.payload() == [0x01, 0x03] {
                    continue;
                }
                let answer = client.expect().await.map_err(ExchangeError::Client)?;
                client_seq = answer.last_seq.wrapping_add(1);
                let forward = answer.with_seq(packet.last_seq.wrapping_add(1));
                send(server, &forward)
                    .await
                    .map_err(ExchangeError::Server)?;
            }
            other => return Err(ExchangeError::Unexpected(other.unwrap_or(0))),
        }
    }
}

/// Writes one packet straight to the stream under `reader`.
pub async fn send(reader: &mut PacketReader<Stream>, packet: &Packet) -> Result<(), PacketError> {
    let stream = reader.get_mut();
    stream.write_all(packet.raw()).await?;
    stream.flush().await?;
    Ok(())
}
