//! The PostgreSQL v3 protocol by hand, on a raw socket.
//!
//! Drivers never send malformed messages, so robustness tests (bad lengths, unknown message
//! types, truncated frames) and byte-level startup tests (GSSENCRequest, the 'N' answer, the
//! connection closing after a failed login) build and read frames themselves. [`frontend`]
//! builds client messages; [`RawConnection`] sends bytes and reads backend messages, with a
//! timeout on every read so a proxy that hangs fails the test instead of blocking it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pg::scram::{ScramClient, md5_response};
use crate::pg::target::Login;

/// Builders for frontend (client) messages.
pub mod frontend {
    /// The protocol version 3.0 code of a StartupMessage.
    pub const PROTOCOL_3_0: i32 = 196_608;
    /// The SSLRequest code.
    pub const SSL_REQUEST: i32 = 80_877_103;
    /// The GSSENCRequest code.
    pub const GSSENC_REQUEST: i32 = 80_877_104;
    /// The CancelRequest code.
    pub const CANCEL_REQUEST: i32 = 80_877_102;

    /// A StartupMessage with `params` (user, database, application_name...).
    pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
        for (key, value) in params {
            body.extend_from_slice(key.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        untagged(&body)
    }

    /// An 8-byte SSLRequest.
    pub fn ssl_request() -> Vec<u8> {
        untagged(&SSL_REQUEST.to_be_bytes())
    }

    /// An 8-byte GSSENCRequest.
    pub fn gssenc_request() -> Vec<u8> {
        untagged(&GSSENC_REQUEST.to_be_bytes())
    }

    /// A CancelRequest for backend `pid` with secret `key`.
    pub fn cancel_request(pid: i32, key: i32) -> Vec<u8> {
        let mut body = CANCEL_REQUEST.to_be_bytes().to_vec();
        body.extend_from_slice(&pid.to_be_bytes());
        body.extend_from_slice(&key.to_be_bytes());
        untagged(&body)
    }

    /// A message without a type byte (startup-phase packets): length, then `body`.
    pub fn untagged(body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// A regular message: type byte, length (including itself), body.
    pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A simple Query.
    pub fn query(sql: &str) -> Vec<u8> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        message(b'Q', &body)
    }

    /// A PasswordMessage (cleartext or md5 response).
    pub fn password(text: &str) -> Vec<u8> {
        let mut body = text.as_bytes().to_vec();
        body.push(0);
        message(b'p', &body)
    }

    /// A SASLInitialResponse.
    pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
        let mut body = mechanism.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&(data.len() as i32).to_be_bytes());
        body.extend_from_slice(data);
        message(b'p', &body)
    }

    /// A SASLResponse.
    pub fn sasl_response(data: &[u8]) -> Vec<u8> {
        message(b'p', data)
    }

    /// CopyData.
    pub fn copy_data(data: &[u8]) -> Vec<u8> {
        message(b'd', data)
    }

    /// CopyDone.
    pub fn copy_done() -> Vec<u8> {
        message(b'c', &[])
    }

    /// Terminate.
    pub fn terminate() -> Vec<u8> {
        message(b'X', &[])
    }
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendMessage {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl BackendMessage {
    /// The fields of an ErrorResponse or NoticeResponse, by field code (`C` is the SQLSTATE,
    /// `M` the message, `S` the severity).
    pub fn fields(&self) -> BTreeMap<char, String> {
        let mut fields = BTreeMap::new();
        if self.tag != b'E' && self.tag != b'N' {
            return fields;
        }
        for field in self.body.split(|b| *b == 0) {
            if let Some((&code, value)) = field.split_first() {
                fields.insert(code as char, String::from_utf8_lossy(value).into_owned());
            }
        }
        fields
    }

    /// The SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn sqlstate(&self) -> Option<String> {
        self.fields().remove(&'C')
    }

    /// Whether this is an ErrorResponse.
    pub fn is_error(&self) -> bool {
        self.tag == b'E'
    }

    /// The request code of an Authentication message.
    pub fn auth_code(&self) -> Option<i32> {
        (self.tag == b'R' && self.body.len() >= 4)
            .then(|| i32::from_be_bytes([self.body[0], self.body[1], self.body[2], self.body[3]]))
    }

    /// The columns of a DataRow (`None` for NULL).
    pub fn data_row(&self) -> Option<Vec<Option<Vec<u8>>>> {
        if self.tag != b'D' || self.body.len() < 2 {
            return None;
        }
        let count = u16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let mut at = 2;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let len = i32::from_be_bytes(self.body.get(at..at + 4)?.try_into().ok()?);
            at += 4;
            if len < 0 {
                columns.push(None);
            } else {
                let len = len as usize;
                columns.push(Some(self.body.get(at..at + len)?.to_vec()));
                at += len;
            }
        }
        Some(columns)
    }

    /// The tag of a CommandComplete (`INSERT 0 3`, `SELECT 5`).
    pub fn command_tag(&self) -> Option<String> {
        (self.tag == b'C').then(|| {
            String::from_utf8_lossy(self.body.strip_suffix(&[0]).unwrap_or(&self.body)).into_owned()
        })
    }

    /// A short human description, for assertion messages.
    pub fn describe(&self) -> String {
        match self.tag {
            b'E' | b'N' => format!("{} {:?}", self.tag as char, self.fields()),
            _ => format!(
                "{} ({} bytes) {:?}",
                self.tag as char,
                self.body.len(),
                String::from_utf8_lossy(&self.body[..self.body.len().min(80)])
            ),
        }
    }
}

/// How a connection ended when the client waited for the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Messages received before the end.
    pub messages: Vec<BackendMessage>,
    /// Bytes after the last complete message (a truncated frame), if any.
    pub trailing: Vec<u8>,
    /// Whether the end was a reset rather than an orderly FIN.
    pub reset: bool,
}

impl Closed {
    /// The ErrorResponses among the messages.
    pub fn errors(&self) -> Vec<&BackendMessage> {
        self.messages.iter().filter(|m| m.is_error()).collect()
    }
}

/// The outcome of a StartupMessage and the authentication that follows.
#[derive(Debug, Clone)]
pub enum Startup {
    /// Logged in: ReadyForQuery received.
    Ready {
        /// BackendKeyData (process id, secret key).
        backend_key: Option<(i32, i32)>,
        /// ParameterStatus values.
        parameters: BTreeMap<String, String>,
        /// The SASL mechanisms offered, when the server asked for SASL.
        sasl_mechanisms: Vec<String>,
    },
    /// The server answered with an ErrorResponse.
    Refused(BackendMessage),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A raw client connection.
pub struct RawConnection {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    peer: SocketAddr,
    local: SocketAddr,
}

impl std::fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawConnection")
            .field("peer", &self.peer)
            .finish()
    }
}

/// How long a single read may wait by default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

impl RawConnection {
    /// Opens a TCP connection.
    pub async fn connect(addr: SocketAddr) -> Result<RawConnection> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok(RawConnection {
            stream: Box::new(stream),
            buffer: Vec::new(),
            peer: addr,
            local,
        })
    }

    /// The client's own address (what the server sees as the client IP and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .await
            .with_context(|| format!("cannot send {} bytes to {}", bytes.len(), self.peer))?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Closes the sending direction (the server sees end of input).
    pub async fn shutdown_write(&mut self) -> Result<()> {
        self.stream
            .shutdown()
            .await
            .context("cannot shut down writing")
    }

    /// Reads one byte (the answer to SSLRequest or GSSENCRequest); `None` at end of stream.
    pub async fn read_byte(&mut self, timeout: Duration) -> Result<Option<u8>> {
        if !self.buffer.is_empty() {
            return Ok(Some(self.buffer.remove(0)));
        }
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(timeout, self.stream.read(&mut byte))
            .await
            .map_err(|_| anyhow!("no byte from {} within {timeout:?}", self.peer))??;
        Ok((n == 1).then_some(byte[0]))
    }

    /// Reads one backend message; `None` if the connection ended (orderly or by reset) at a
    /// message boundary. An end inside a message is an error.
    pub async fn read_message(&mut self, timeout: Duration) -> Result<Option<BackendMessage>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(message) = self.take_buffered()? {
                return Ok(Some(message));
            }
            match self.fill(deadline).await? {
                Fill::Data => {}
                Fill::Eof | Fill::Reset if self.buffer.is_empty() => return Ok(None),
                Fill::Eof | Fill::Reset => bail!(
                    "the connection ended inside a message ({} bytes pending)",
                    self.buffer.len()
                ),
                Fill::Timeout => bail!(
                    "no complete message from {} within {timeout:?} ({} bytes pending)",
                    self.peer,
                    self.buffer.len()
                ),
            }
        }
    }

    /// Reads messages until the connection ends; fails if it is still open after `timeout`.
    pub async fn read_until_closed(&mut self, timeout: Duration) -> Result<Closed> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut messages = Vec::new();
        loop {
            while let Some(message) = self.take_buffered()? {
                messages.push(message);
            }
            match self.fill(deadline).await? {
                Fill::Data => {}
                Fill::Eof => {
                    return Ok(Closed {
                        messages,
                        trailing: std::mem::take(&mut self.buffer),
                        reset: false,
                    });
                }
                Fill::Reset => {
                    return Ok(Closed {
                        messages,
                        trailing: std::mem::take(&mut self.buffer),
                        reset: true,
                    });
                }
                Fill::Timeout => bail!(
                    "the connection to {} was still open after {timeout:?}; messages so far: {:?}",
                    self.peer,
                    messages.iter().map(|m| m.describe()).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Reads messages up to and including the first with type `tag`.
    pub async fn read_until(&mut self, tag: u8, timeout: Duration) -> Result<Vec<BackendMessage>> {
        let mut messages = Vec::new();
        loop {
            match self.read_message(timeout).await? {
                Some(m) => {
                    let done = m.tag == tag;
                    messages.push(m);
                    if done {
                        return Ok(messages);
                    }
                }
                None => bail!(
                    "the connection ended before a '{}' message; got {:?}",
                    tag as char,
                    messages.iter().map(|m| m.describe()).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Sends SSLRequest, expects 'S', and performs the TLS handshake.
    pub async fn start_tls(
        mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<RawConnection> {
        self.send(&frontend::ssl_request()).await?;
        match self.read_byte(READ_TIMEOUT).await? {
            Some(b'S') => {}
            other => bail!("SSLRequest was answered with {other:?}, not 'S'"),
        }
        self.handshake(config, server_name).await
    }

    /// Performs a TLS handshake on the connection as it is.
    pub async fn handshake(
        self,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<RawConnection> {
        anyhow::ensure!(
            self.buffer.is_empty(),
            "bytes arrived before the TLS handshake (a buffering proxy would let a man in the middle inject them)"
        );
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = crate::tls::server_name(server_name)?;
        let tls = tokio::time::timeout(READ_TIMEOUT, connector.connect(name, self.stream))
            .await
            .map_err(|_| anyhow!("the TLS handshake with {} timed out", self.peer))?
            .with_context(|| format!("the TLS handshake with {} failed", self.peer))?;
        Ok(RawConnection {
            stream: Box::new(tls),
            buffer: Vec::new(),
            peer: self.peer,
            local: self.local,
        })
    }

    /// Sends a StartupMessage for `login` (plus `extra` parameters) and authenticates with the
    /// method the server asks for (cleartext, md5, SCRAM-SHA-256).
    pub async fn startup(&mut self, login: &Login, extra: &[(&str, &str)]) -> Result<Startup> {
        let mut params = vec![
            ("user", login.user.as_str()),
            ("database", login.database.as_str()),
        ];
        params.extend_from_slice(extra);
        self.send(&frontend::startup(&params)).await?;
        let mut sasl_mechanisms = Vec::new();
        let mut scram: Option<ScramClient> = None;
        let mut parameters = BTreeMap::new();
        let mut backend_key = None;
        loop {
            let message = self
                .read_message(READ_TIMEOUT)
                .await?
                .context("the server closed the connection during startup")?;
            match message.tag {
                b'E' => return Ok(Startup::Refused(message)),
                b'R' => match message.auth_code() {
                    Some(0) => {}
                    Some(3) => self.send(&frontend::password(&login.password)).await?,
                    Some(5) => {
                        let salt = message.body.get(4..8).context("short md5 request")?;
                        let response = md5_response(&login.user, &login.password, salt);
                        self.send(&frontend::password(&response)).await?;
                    }
                    Some(10) => {
                        sasl_mechanisms = message.body[4..]
                            .split(|b| *b == 0)
                            .filter(|m| !m.is_empty())
                            .map(|m| String::from_utf8_lossy(m).into_owned())
                            .collect();
                        anyhow::ensure!(
                            sasl_mechanisms.iter().any(|m| m == "SCRAM-SHA-256"),
                            "the server does not offer SCRAM-SHA-256: {sasl_mechanisms:?}"
                        );
                        let client = ScramClient::new(&login.password);
                        self.send(&frontend::sasl_initial_response(
                            "SCRAM-SHA-256",
                            &client.client_first(),
                        ))
                        .await?;
                        scram = Some(client);
                    }
                    Some(11) => {
                        let client = scram.as_mut().context("SASLContinue without SASL")?;
                        let reply = client.client_final(&message.body[4..])?;
                        self.send(&frontend::sasl_response(&reply)).await?;
                    }
                    Some(12) => {
                        let client = scram.as_ref().context("SASLFinal without SASL")?;
                        client.verify_server_final(&message.body[4..])?;
                    }
                    other => bail!("unsupported authentication request {other:?}"),
                },
                b'S' => {
                    let mut parts = message.body.split(|b| *b == 0);
                    let key = parts.next().unwrap_or_default();
                    let value = parts.next().unwrap_or_default();
                    parameters.insert(
                        String::from_utf8_lossy(key).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
                b'K' => {
                    let b = &message.body;
                    anyhow::ensure!(b.len() == 8, "BackendKeyData of {} bytes", b.len());
                    backend_key = Some((
                        i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    ));
                }
                b'N' => {}
                b'Z' => {
                    return Ok(Startup::Ready {
                        backend_key,
                        parameters,
                        sasl_mechanisms,
                    });
                }
                other => bail!(
                    "unexpected message '{}' during startup: {}",
                    other as char,
                    message.describe()
                ),
            }
        }
    }

    /// Logs in and fails unless the server accepted the login.
    pub async fn login(&mut self, login: &Login, extra: &[(&str, &str)]) -> Result<Startup> {
        match self.startup(login, extra).await? {
            Startup::Refused(error) => bail!("login refused: {}", error.describe()),
            ready => Ok(ready),
        }
    }

    /// The rows of a simple query's result as text (`None` for NULL), from its messages.
    pub fn rows_of(messages: &[BackendMessage]) -> Vec<Vec<Option<String>>> {
        messages
            .iter()
            .filter_map(BackendMessage::data_row)
            .map(|row| {
                row.into_iter()
                    .map(|c| c.map(|v| String::from_utf8_lossy(&v).into_owned()))
                    .collect()
            })
            .collect()
    }

    /// Sends a simple Query and returns every message up to ReadyForQuery.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<BackendMessage>> {
        self.send(&frontend::query(sql)).await?;
        self.read_until(b'Z', READ_TIMEOUT).await
    }

    /// Moves complete messages out of the buffer.
    fn take_buffered(&mut self) -> Result<Option<BackendMessage>> {
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        let declared = i32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]);
        if !(4..=(1 << 30)).contains(&declared) {
            bail!(
                "the server sent a message '{}' with an impossible length {declared}",
                self.buffer[0] as char
            );
        }
        let total = 1 + declared as usize;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let rest = self.buffer.split_off(total);
        let frame = std::mem::replace(&mut self.buffer, rest);
        Ok(Some(BackendMessage {
            tag: frame[0],
            body: frame[5..].to_vec(),
        }))
    }

    async fn fill(&mut self, deadline: tokio::time::Instant) -> Result<Fill> {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Ok(Fill::Timeout),
            Ok(Ok(0)) => Ok(Fill::Eof),
            Ok(Ok(n)) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(Fill::Data)
            }
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                Ok(Fill::Reset)
            }
            // rustls reports a peer that closed without close_notify as UnexpectedEof.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Fill::Eof),
            Ok(Err(e)) => Err(e).with_context(|| format!("reading from {} failed", self.peer)),
        }
    }
}

enum Fill {
    Data,
    Eof,
    Reset,
    Timeout,
}
