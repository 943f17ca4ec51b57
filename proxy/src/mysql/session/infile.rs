//! LOAD DATA LOCAL INFILE into a table with encrypted columns: the client's file is re-cut
//! into lines as the server will read them, the protected fields are encrypted, and everything
//! else is copied byte for byte ([`warden_encryption::load_data::InfileEncoder`]).
//!
//! A value that cannot be encrypted must not leave a half-loaded table behind, and the server
//! cannot be told to abort a file it is reading (an empty packet ends the file and commits what
//! was sent). So warden reads the rest of the client's file, closes the database connection
//! without another byte (the server aborts the statement: transactional tables keep nothing of
//! it), answers the client with an ERR naming the column and the line, and ends the session.

use std::sync::Arc;

use warden_encryption::load_data::{InfileEncoder, LoadDataPlan};

use super::{Session, SessionEnd};
use crate::mysql::constants::errors;
use crate::mysql::messages::ErrPacket;
use crate::mysql::packet::Packet;

/// Encrypted file data is sent on in packets of this size.
const CHUNK: usize = 1 << 20;

impl Session {
    /// Relays the client's file with the protected fields of each line encrypted.
    pub(super) async fn encrypt_local_file(
        &mut self,
        plan: Arc<LoadDataPlan>,
    ) -> Result<(), SessionEnd> {
        let mut encoder = InfileEncoder::new(plan);
        let mut out = Vec::new();
        let mut seq: Option<u8> = None;
        let mut failure = None;
        loop {
            let packet = self.client_in.expect().await.map_err(SessionEnd::client)?;
            self.metrics.bytes_in.inc_by(packet.raw().len() as u64);
            let next = seq.get_or_insert(packet.seq);
            let last = packet.len == 0;
            if failure.is_none() {
                let result = if last {
                    encoder.finish(&mut out)
                } else {
                    encoder.push(&packet.payload(), &mut out)
                };
                if let Err(e) = result {
                    failure = Some(e);
                }
            }
            if failure.is_none() {
                while out.len() >= CHUNK || (last && !out.is_empty()) {
                    let n = out.len().min(CHUNK);
                    let chunk = Packet::new(*next, &out[..n]);
                    *next = chunk.last_seq.wrapping_add(1);
                    self.send_server(&chunk).await?;
                    out.drain(..n);
                }
            }
            if last {
                let Some(e) = failure else {
                    let end = Packet::new(*next, &[]);
                    self.send_server(&end).await?;
                    // The server numbers its answer after warden's packets; the client
                    // expects it after its own.
                    self.reply_seq = Some(packet.last_seq.wrapping_add(1));
                    return self.server_out.flush().await.map_err(SessionEnd::Io);
                };
                let err = ErrPacket::new(
                    errors::UNKNOWN,
                    "22007",
                    format!(
                        "{e}; warden aborted the LOAD DATA and closed the session so that nothing is loaded half-encrypted (refused by warden rule \"encryption\")"
                    ),
                );
                self.send_client(&err.packet(packet.last_seq.wrapping_add(1)))
                    .await?;
                return Err(SessionEnd::EncryptionAborted(e.to_string()));
            }
        }
    }
}
