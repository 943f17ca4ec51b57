//! MySQL packet framing: turning a byte stream into whole (logical) packets, and back.
//!
//! Every packet is a 3-byte little-endian payload length, a 1-byte sequence id and the payload.
//! A payload of 16 MiB − 1 or more is split into physical packets of exactly 0xFFFFFF bytes
//! followed by a shorter one (possibly empty), each with the next sequence id. A [`Packet`]
//! keeps all the physical packets of one logical packet as the original bytes, so the relay
//! forwards them untouched; the payload is reassembled only when warden needs to read it.
//!
//! The reader checks the running length against the configured limit before it buffers more,
//! never panics on peer input, and is cancel-safe (all state lives in the buffer), so it can be
//! raced against the other leg in `select!`.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload of one physical packet; a payload this long continues in the next.
pub const MAX_PHYSICAL: usize = 0xFF_FFFF;

/// Writes go through to the socket once this much is buffered.
const WRITE_THROUGH: usize = 64 * 1024;

/// One logical packet, as it came off the wire (all its physical packets, headers included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    raw: Bytes,
    /// Sequence id of the first physical packet.
    pub seq: u8,
    /// Sequence id of the last physical packet: the next packet of the exchange follows it.
    pub last_seq: u8,
    /// Total payload length.
    pub len: usize,
}

impl Packet {
    /// Builds a packet with `payload`, split into physical packets from sequence id `seq`.
    pub fn new(seq: u8, payload: &[u8]) -> Packet {
        let mut raw = BytesMut::with_capacity(payload.len() + 4);
        let mut s = seq;
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_PHYSICAL);
            raw.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            raw.extend_from_slice(&[s]);
            raw.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if n < MAX_PHYSICAL {
                break;
            }
            s = s.wrapping_add(1);
        }
        Packet {
            raw: raw.freeze(),
            seq,
            last_seq: s,
            len: payload.len(),
        }
    }

    /// The bytes as they travel, headers included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The payload of the first physical packet (the whole payload for packets < 16 MiB).
    pub fn head(&self) -> &[u8] {
        let n = self.len.min(MAX_PHYSICAL);
        self.raw.get(4..4 + n).unwrap_or_default()
    }

    /// The first payload byte (the command, or the kind of a reply), if any.
    pub fn first(&self) -> Option<u8> {
        self.head().first().copied()
    }

    /// The whole payload, reassembled when it spans several physical packets.
    pub fn payload(&self) -> Cow<'_, [u8]> {
        if self.len < MAX_PHYSICAL {
            return Cow::Borrowed(self.head());
        }
        let mut out = Vec::with_capacity(self.len);
        let mut rest = &self.raw[..];
        while rest.len() >= 4 {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
            let end = (4 + n).min(rest.len());
            out.extend_from_slice(&rest[4..end]);
            rest = &rest[end..];
        }
        Cow::Owned(out)
    }

    /// The same payload with another first sequence id.
    pub fn with_seq(&self, seq: u8) -> Packet {
        if seq == self.seq {
            return self.clone();
        }
        Packet::new(seq, &self.payload())
    }
}

/// Why a stream could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("packet of {len} bytes exceeds warden's limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("the peer closed the connection in the middle of a packet")]
    Truncated,
    #[error("packet sequence id {got} where {expected} was expected")]
    Sequence { got: u8, expected: u8 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads logical packets from one leg.
pub struct PacketReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

/// Where the next complete logical packet ends in `buf`, if it is all there.
enum Scan {
    Complete {
        end: usize,
        last_seq: u8,
        len: usize,
    },
    Partial,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self::with_buffered(inner, max, BytesMut::new())
    }

    /// A reader that starts with bytes already read from the stream.
    pub fn with_buffered(inner: R, max: usize, buf: BytesMut) -> Self {
        PacketReader { inner, buf, max }
    }

    fn scan(&self) -> Result<Scan, PacketError> {
        let mut at = 0;
        let mut len = 0usize;
        loop {
            let Some(header) = self.buf.get(at..at + 4) else {
                return Ok(Scan::Partial);
            };
            let n = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            len += n;
            if len > self.max {
                return Err(PacketError::TooLarge { len, max: self.max });
            }
            if self.buf.len() < at + 4 + n {
                return Ok(Scan::Partial);
            }
            let seq = header[3];
            at += 4 + n;
            if n < MAX_PHYSICAL {
                return Ok(Scan::Complete {
                    end: at,
                    last_seq: seq,
                    len,
                });
            }
        }
    }

    /// Whether a whole packet is already buffered (so a flush can wait).
    pub fn has_buffered_packet(&self) -> bool {
        matches!(self.scan(), Ok(Scan::Complete { .. }))
    }

    /// The next packet; `None` when the peer closed the connection between packets.
    pub async fn next(&mut self) -> Result<Option<Packet>, PacketError> {
        loop {
            if let Scan::Complete { end, last_seq, len } = self.scan()? {
                let raw = self.buf.split_to(end).freeze();
                let seq = raw[3];
                return Ok(Some(Packet {
                    raw,
                    seq,
                    last_seq,
                    len,
                }));
            }
            if self.buf.capacity() - self.buf.len() < 8192 {
                self.buf.reserve(16 * 1024);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(PacketError::Truncated)
                };
            }
        }
    }

    /// The next packet, which must be there (the peer owes a reply).
    pub async fn expect(&mut self) -> Result<Packet, PacketError> {
        self.next().await?.ok_or(PacketError::Truncated)
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

/// Buffers packets for one leg and writes them in few system calls.
pub struct PacketWriter<W> {
    inner: W,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    pub fn new(inner: W) -> Self {
        PacketWriter {
            inner,
            buf: BytesMut::new(),
        }
    }

    /// Queues `packet`; writes through when much is buffered.
    pub async fn push(&mut self, packet: &Packet) -> std::io::Result<()> {
        if packet.raw.len() >= WRITE_THROUGH {
            self.flush_buffer().await?;
            return self.inner.write_all(&packet.raw).await;
        }
        self.buf.extend_from_slice(&packet.raw);
        if self.buf.len() >= WRITE_THROUGH {
            self.flush_buffer().await?;
        }
        Ok(())
    }

    /// Queues and sends at once.
    pub async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        self.push(packet).await?;
        self.flush().await
    }

    async fn flush_buffer(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.advance(self.buf.len());
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buffer().await?;
        self.inner.flush().await
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.inner.shutdown().await
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn small_packets_keep_their_bytes() {
        let mut wire = Packet::new(0, b"\x03SELECT 1").raw().to_vec();
        wire.extend_from_slice(Packet::new(1, b"").raw());
        run(async {
            let mut r = PacketReader::new(std::io::Cursor::new(wire), 1 << 20);
            let p = r.next().await.unwrap().unwrap();
            assert_eq!(
                (p.seq, p.first(), &*p.payload()),
                (0, Some(3), &b"\x03SELECT 1"[..])
            );
            assert!(r.has_buffered_packet());
            let p = r.next().await.unwrap().unwrap();
            assert_eq!((p.seq, p.len), (1, 0));
            assert!(r.next().await.unwrap().is_none());
        });
    }

    #[test]
    fn large_payloads_span_physical_packets_with_consecutive_ids() {
        let payload: Vec<u8> = (0..MAX_PHYSICAL * 2 + 10).map(|i| i as u8).collect();
        let packet = Packet::new(254, &payload);
        assert_eq!((packet.seq, packet.last_seq), (254, 0));
        assert_eq!(packet.raw().len(), payload.len() + 12);
        run(async {
            let mut r = PacketReader::new(std::io::Cursor::new(packet.raw().to_vec()), 1 << 26);
            let p = r.next().await.unwrap().unwrap();
            assert_eq!(p, packet);
            assert_eq!(&*p.payload(), &payload[..]);
        });
        // Exactly 0xFFFFFF bytes: an empty packet ends it.
        let exact = Packet::new(0, &vec![7u8; MAX_PHYSICAL]);
        assert_eq!(exact.raw().len(), MAX_PHYSICAL + 8);
        assert_eq!(exact.last_seq, 1);
    }

    #[test]
    fn limits_and_truncation_are_errors() {
        run(async {
            let mut r = PacketReader::new(std::io::Cursor::new(vec![0xff, 0xff, 0x0f, 0]), 1000);
            assert!(matches!(r.next().await, Err(PacketError::TooLarge { .. })));
            let mut r = PacketReader::new(std::io::Cursor::new(vec![5, 0, 0, 0, 1]), 1000);
            assert!(matches!(r.next().await, Err(PacketError::Truncated)));
        });
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            run(async {
                let mut r = PacketReader::new(std::io::Cursor::new(bytes), 64);
                while let Ok(Some(p)) = r.next().await {
                    let _ = p.payload();
                }
            });
        }
    }
}
