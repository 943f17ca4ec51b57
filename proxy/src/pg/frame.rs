//! PostgreSQL message framing: turning a byte stream into whole messages, and back.
//!
//! Every message after startup is a one-byte tag, a big-endian i32 length that counts itself,
//! and a body. The startup packet has no tag. A frame is kept as the original bytes
//! (zero-copy `Bytes` split off the read buffer) so the fast path forwards it untouched.
//!
//! The reader checks every length against a per-message limit before it allocates, so a peer
//! cannot make warden reserve memory by announcing a huge message, and it never panics on peer
//! input: a bad length, an unknown tag or a stream cut mid-message is a [`FrameError`].

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest startup packet accepted, as in PostgreSQL (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Limit for client messages that carry no payload worth more than a few names.
const SMALL_CLIENT_MESSAGE: usize = 64 * 1024;

/// One protocol message, as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The type byte; `0` for the untagged startup packet.
    pub tag: u8,
    /// The whole message: tag (when there is one), length and body.
    pub bytes: Bytes,
}

impl Frame {
    /// The body, after the tag and the length.
    pub fn body(&self) -> &[u8] {
        let header = if self.tag == 0 { 4 } else { 5 };
        self.bytes.get(header..).unwrap_or_default()
    }

    /// Builds a frame from a tag and a body.
    pub fn new(tag: u8, body: &[u8]) -> Frame {
        let mut bytes = BytesMut::with_capacity(body.len() + 5);
        bytes.extend_from_slice(&[tag]);
        bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        bytes.extend_from_slice(body);
        Frame {
            tag,
            bytes: bytes.freeze(),
        }
    }
}

/// Which side of the protocol a stream comes from: the tags each side may send differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A client (frontend) talking to warden.
    Client,
    /// A database server (backend) talking to warden.
    Server,
}

/// Why a stream could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message type {tag:?} announces {len} bytes, more than the {max} allowed")]
    TooLarge { tag: char, len: usize, max: usize },
    #[error("message type {tag:?} announces an invalid length {len}")]
    BadLength { tag: char, len: i64 },
    #[error("invalid message type byte 0x{tag:02x}")]
    UnknownTag { tag: u8 },
    #[error("the connection closed in the middle of a message")]
    Truncated,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Whether the peer broke the protocol (as opposed to the connection failing).
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, FrameError::Io(_))
    }
}

/// Whether `tag` is a message type `peer` may send after startup.
pub fn tag_allowed(peer: Peer, tag: u8) -> bool {
    match peer {
        // Bind, Close, CopyData, CopyDone, Describe, Execute, CopyFail, Flush, FunctionCall,
        // Parse, Password/SASL, Query, Sync, Terminate.
        Peer::Client => matches!(
            tag,
            b'B' | b'C'
                | b'd'
                | b'c'
                | b'D'
                | b'E'
                | b'f'
                | b'H'
                | b'F'
                | b'P'
                | b'p'
                | b'Q'
                | b'S'
                | b'X'
        ),
        Peer::Server => matches!(
            tag,
            b'R' | b'K'
                | b'2'
                | b'3'
                | b'C'
                | b'd'
                | b'c'
                | b'G'
                | b'H'
                | b'W'
                | b'D'
                | b'I'
                | b'E'
                | b'V'
                | b'v'
                | b'n'
                | b'N'
                | b'A'
                | b't'
                | b'S'
                | b'1'
                | b's'
                | b'Z'
                | b'T'
        ),
    }
}

/// The largest body length accepted for `tag` from `peer`.
fn limit(peer: Peer, tag: u8, max_message: usize) -> usize {
    match (peer, tag) {
        // Messages that carry SQL text, parameters or COPY data may be large.
        (Peer::Client, b'Q' | b'P' | b'B' | b'd' | b'F' | b'f') => max_message,
        (Peer::Client, _) => SMALL_CLIENT_MESSAGE.min(max_message),
        (Peer::Server, _) => max_message,
    }
}

/// Reads frames from one side of a connection through a buffer.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    peer: Peer,
    max_message: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of messages sent by `peer`, with bodies up to `max_message` bytes.
    pub fn new(inner: R, peer: Peer, max_message: usize) -> Self {
        Self::with_buffered(inner, peer, max_message, BytesMut::with_capacity(16 * 1024))
    }

    /// Like [`FrameReader::new`], starting with bytes already read from `inner`.
    pub fn with_buffered(inner: R, peer: Peer, max_message: usize, buf: BytesMut) -> Self {
        Self {
            inner,
            buf,
            peer,
            max_message,
        }
    }

    /// Whether a whole frame is already buffered, so reading it needs no I/O.
    pub fn has_buffered_frame(&self) -> bool {
        matches!(self.peek_len(), Some(Ok(n)) if self.buf.len() >= n)
    }

    /// The total length of the next frame, if its header is buffered.
    fn peek_len(&self) -> Option<Result<usize, FrameError>> {
        if self.buf.len() < 5 {
            return None;
        }
        let tag = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        Some(check_len(self.peer, tag, len as i64, self.max_message).map(|body| body + 5))
    }

    /// The next message, or `None` when the peer closed the stream between messages.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(total) = self.peek_len() {
                let total = total?;
                let tag = self.buf[0];
                if !tag_allowed(self.peer, tag) {
                    return Err(FrameError::UnknownTag { tag });
                }
                if self.buf.len() >= total {
                    let bytes = self.buf.split_to(total).freeze();
                    return Ok(Some(Frame { tag, bytes }));
                }
                self.buf.reserve(total - self.buf.len());
            } else if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// Reads the untagged startup packet (or SSLRequest, GSSENCRequest, CancelRequest).
    pub async fn next_startup(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len < 8 {
                    return Err(FrameError::BadLength {
                        tag: '\0',
                        len: len as i64,
                    });
                }
                let len = len as usize;
                if len > MAX_STARTUP_LEN {
                    return Err(FrameError::TooLarge {
                        tag: '\0',
                        len,
                        max: MAX_STARTUP_LEN,
                    });
                }
                if self.buf.len() >= len {
                    let bytes = self.buf.split_to(len).freeze();
                    return Ok(Some(Frame { tag: 0, bytes }));
                }
                self.buf.reserve(len - self.buf.len());
            } else {
                self.buf.reserve(64);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// The first buffered byte without consuming it, reading if nothing is buffered.
    /// Used to tell a direct TLS ClientHello from a startup packet.
    pub async fn peek_byte(&mut self) -> Result<Option<u8>, FrameError> {
        if self.buf.is_empty() && self.inner.read_buf(&mut self.buf).await? == 0 {
            return Ok(None);
        }
        Ok(self.buf.first().copied())
    }

    /// Bytes read from the stream but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Gives back the stream and any bytes read ahead of the last frame.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying stream, mutably (for request/response exchanges such as startup).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

fn check_len(peer: Peer, tag: u8, len: i64, max_message: usize) -> Result<usize, FrameError> {
    if len < 4 {
        return Err(FrameError::BadLength {
            tag: tag as char,
            len,
        });
    }
    let body = (len - 4) as usize;
    let max = limit(peer, tag, max_message);
    if body > max {
        return Err(FrameError::TooLarge {
            tag: tag as char,
            len: body,
            max,
        });
    }
    Ok(body)
}

/// Buffers outgoing messages and writes them in as few system calls as it can.
///
/// Callers push whole messages and call [`FrameWriter::flush`] when the input side has nothing
/// more buffered, which coalesces a pipeline's or a result set's messages into large writes.
pub struct FrameWriter<W> {
    inner: W,
    buf: BytesMut,
    /// Bytes written to the stream so far.
    written: u64,
}

/// Above this many buffered bytes a push writes through, so memory per session stays bounded.
const WRITE_HIGH_WATER: usize = 64 * 1024;

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(16 * 1024),
            written: 0,
        }
    }

    /// Queues `bytes`; writes the buffer out if it has grown past the high-water mark.
    pub async fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + bytes.len() > WRITE_HIGH_WATER {
            self.write_buffer().await?;
            if bytes.len() > WRITE_HIGH_WATER {
                self.inner.write_all(bytes).await?;
                self.written += bytes.len() as u64;
                return Ok(());
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Queues a frame.
    pub async fn push_frame(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.push(&frame.bytes).await
    }

    async fn write_buffer(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes out everything queued and flushes the stream (TLS records included).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.write_buffer().await?;
        self.inner.flush().await
    }

    /// Whether anything is queued.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Total bytes written so far, and resets the count.
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    /// Flushes and shuts the write side down.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.inner.shutdown().await
    }

    /// The underlying stream.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Skips `n` bytes of a buffer, for callers that parse ahead.
pub fn advance(buf: &mut BytesMut, n: usize) {
    buf.advance(n.min(buf.len()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reader(bytes: Vec<u8>, peer: Peer) -> FrameReader<std::io::Cursor<Vec<u8>>> {
        FrameReader::new(std::io::Cursor::new(bytes), peer, 1 << 20)
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn frames_split_on_boundaries_and_keep_their_bytes() {
        let mut wire = Frame::new(b'Q', b"SELECT 1\0").bytes.to_vec();
        wire.extend_from_slice(&Frame::new(b'S', b"").bytes);
        run(async {
            let mut r = reader(wire, Peer::Client);
            let f = r.next().await.unwrap().unwrap();
            assert_eq!(f.tag, b'Q');
            assert_eq!(f.body(), b"SELECT 1\0");
            assert!(r.has_buffered_frame());
            let f = r.next().await.unwrap().unwrap();
            assert_eq!((f.tag, f.body()), (b'S', &b""[..]));
            assert!(r.next().await.unwrap().is_none());
        });
    }

    #[test]
    fn oversized_and_undersized_lengths_are_refused_before_allocating() {
        run(async {
            let mut r = reader(vec![b'Q', 0x7f, 0xff, 0xff, 0xf0], Peer::Client);
            assert!(matches!(r.next().await, Err(FrameError::TooLarge { .. })));
            let mut r = reader(vec![b'S', 0, 0, 0, 3], Peer::Client);
            assert!(matches!(r.next().await, Err(FrameError::BadLength { .. })));
            let mut r = reader(vec![b'S', 0xff, 0xff, 0xff, 0xff], Peer::Client);
            assert!(matches!(r.next().await, Err(FrameError::BadLength { .. })));
            // A Sync announcing 100 kB is refused even though the global limit is larger.
            let mut r = reader(vec![b'S', 0, 1, 0x86, 0xa4], Peer::Client);
            assert!(matches!(r.next().await, Err(FrameError::TooLarge { .. })));
        });
    }

    #[test]
    fn truncation_and_unknown_tags_are_errors() {
        run(async {
            let mut r = reader(vec![b'Q', 0, 0, 0, 10, b'S'], Peer::Client);
            assert!(matches!(r.next().await, Err(FrameError::Truncated)));
            let mut r = reader(Frame::new(b'T', b"").bytes.to_vec(), Peer::Client);
            assert!(matches!(
                r.next().await,
                Err(FrameError::UnknownTag { tag: b'T' })
            ));
        });
    }

    #[test]
    fn startup_packets_are_bounded() {
        run(async {
            let mut r = reader(vec![0xff, 0xff, 0xff, 0xf0, 0, 0], Peer::Client);
            assert!(matches!(
                r.next_startup().await,
                Err(FrameError::BadLength { .. })
            ));
            let mut r = reader(vec![0, 0, 0x30, 0x00, 0, 0], Peer::Client);
            assert!(matches!(
                r.next_startup().await,
                Err(FrameError::TooLarge { .. })
            ));
            let mut r = reader(vec![0, 0, 0, 8, 4, 0xd2, 0x16], Peer::Client);
            assert!(matches!(r.next_startup().await, Err(FrameError::Truncated)));
            let mut r = reader(vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f], Peer::Client);
            let f = r.next_startup().await.unwrap().unwrap();
            assert_eq!(f.body(), &[4, 0xd2, 0x16, 0x2f]);
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        /// Arbitrary bytes never panic the reader, and what it returns re-serialises to a
        /// prefix of the input.
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), server in any::<bool>()) {
            let peer = if server { Peer::Server } else { Peer::Client };
            run(async {
                let mut r = FrameReader::new(std::io::Cursor::new(bytes.clone()), peer, 4096);
                let mut consumed = Vec::new();
                while let Ok(Some(f)) = r.next().await {
                    consumed.extend_from_slice(&f.bytes);
                }
                prop_assert!(bytes.starts_with(&consumed));
                let mut r = FrameReader::new(std::io::Cursor::new(bytes.clone()), peer, 4096);
                let _ = r.next_startup().await;
                Ok(())
            })?;
        }

        /// Valid message streams split into exactly the messages that were written, however
        /// the bytes are chunked.
        #[test]
        fn valid_streams_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let frames: Vec<Frame> = bodies.iter().map(|b| Frame::new(b'd', b)).collect();
            let wire: Vec<u8> = frames.iter().flat_map(|f| f.bytes.to_vec()).collect();
            run(async {
                let mut r = reader(wire, Peer::Client);
                for f in &frames {
                    let next = r.next().await.unwrap();
                    prop_assert_eq!(next.as_ref(), Some(f));
                }
                prop_assert!(r.next().await.unwrap().is_none());
                Ok(())
            })?;
        }
    }
}
