//! A tokio-postgres client whose connection is driven by the harness.
//!
//! tokio-postgres normally hides its connection in a spawned future; tests need what arrives on
//! it: notifications (LISTEN/NOTIFY), notices (RAISE NOTICE), ParameterStatus values, and how the
//! connection ended (a FATAL error from `pg_terminate_backend`, or a clean close). A [`Session`]
//! derefs to the [`Client`] for queries and keeps those observations.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::ops::Deref;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Connection, Notification};

type ParameterRequest = (String, oneshot::Sender<Option<String>>);

/// A connected client, its asynchronous messages and the fate of its connection.
#[derive(Debug)]
pub struct Session {
    client: Client,
    messages: mpsc::UnboundedReceiver<AsyncMessage>,
    pending: VecDeque<AsyncMessage>,
    parameters: mpsc::UnboundedSender<ParameterRequest>,
    driver: JoinHandle<std::result::Result<(), tokio_postgres::Error>>,
}

impl Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Session {
    /// Wraps a client and drives its connection on the current tokio runtime.
    pub fn new<S, T>(client: Client, connection: Connection<S, T>) -> Session
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (message_tx, messages) = mpsc::unbounded_channel();
        let (parameters, parameter_rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(connection, message_tx, parameter_rx));
        Session {
            client,
            messages,
            pending: VecDeque::new(),
            parameters,
            driver,
        }
    }

    /// The client, for APIs that need `&mut Client` (transactions).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The value of a server parameter as last reported by ParameterStatus.
    pub async fn parameter(&self, name: &str) -> Result<Option<String>> {
        let (reply, answer) = oneshot::channel();
        self.parameters
            .send((name.to_string(), reply))
            .map_err(|_| anyhow!("the connection has ended"))?;
        answer
            .await
            .map_err(|_| anyhow!("the connection has ended"))
    }

    /// The next notification, waiting up to `timeout`; other messages are kept.
    pub async fn next_notification(&mut self, timeout: Duration) -> Result<Notification> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|m| matches!(m, AsyncMessage::Notification(_)))
            && let Some(AsyncMessage::Notification(n)) = self.pending.remove(i)
        {
            return Ok(n);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Err(_) => bail!("no notification arrived within {timeout:?}"),
                Ok(None) => bail!("the connection ended before a notification arrived"),
                Ok(Some(AsyncMessage::Notification(n))) => return Ok(n),
                Ok(Some(other)) => self.pending.push_back(other),
            }
        }
    }

    /// The notices (severity, SQLSTATE, message) received so far, removing them.
    pub fn take_notices(&mut self) -> Vec<(String, String, String)> {
        while let Ok(message) = self.messages.try_recv() {
            self.pending.push_back(message);
        }
        let mut notices = Vec::new();
        self.pending.retain(|m| match m {
            AsyncMessage::Notice(n) => {
                notices.push((
                    n.severity().to_string(),
                    n.code().code().to_string(),
                    n.message().to_string(),
                ));
                false
            }
            _ => true,
        });
        notices
    }

    /// The backend process id (as the server reports it through this connection). Asked with a
    /// simple query, which leaves no prepared statement to be closed behind it: a Close still in
    /// flight would take the FATAL error of a terminated backend as its own reply.
    pub async fn backend_pid(&self) -> Result<i32> {
        let messages = self
            .client
            .simple_query("SELECT pg_backend_pid()")
            .await
            .context("SELECT pg_backend_pid() failed")?;
        messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            })
            .context("SELECT pg_backend_pid() returned no row")?
            .parse()
            .context("pg_backend_pid() is not a number")
    }

    /// Whether the connection task has finished.
    pub fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    /// Waits up to `timeout` for the connection to end and returns how it ended: `Ok(())` for a
    /// clean close, the error otherwise (a FATAL ErrorResponse arrives as a database error).
    pub async fn ended(
        self,
        timeout: Duration,
    ) -> Result<std::result::Result<(), tokio_postgres::Error>> {
        let Session { client, driver, .. } = self;
        match tokio::time::timeout(timeout, driver).await {
            Ok(Ok(outcome)) => {
                drop(client);
                Ok(outcome)
            }
            Ok(Err(join)) => bail!("the connection task failed: {join}"),
            Err(_) => bail!("the connection did not end within {timeout:?}"),
        }
    }
}

/// Polls the connection, handing asynchronous messages to the session and answering parameter
/// questions between polls (tokio-postgres keeps ParameterStatus values on the connection).
async fn drive<S, T>(
    mut connection: Connection<S, T>,
    messages: mpsc::UnboundedSender<AsyncMessage>,
    mut parameters: mpsc::UnboundedReceiver<ParameterRequest>,
) -> std::result::Result<(), tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut asking = true;
    loop {
        tokio::select! {
            biased;
            request = parameters.recv(), if asking => match request {
                Some((name, reply)) => {
                    let _ = reply.send(connection.parameter(&name).map(str::to_owned));
                }
                None => asking = false,
            },
            message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(message)) => {
                    let _ = messages.send(message);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
