//! Warden's own PostgreSQL client, for its service login (`[upstream.service]`).
//!
//! Warden reads the catalog of the policy's tables and runs the online migrations
//! (`warden encrypt` / `decrypt` / `rekey`) as a user of its own. The login is the proxy's
//! upstream login ([`Target::connect`]: TCP, TLS as configured, SCRAM or md5 with the password
//! from the environment variable the configuration names); the queries use the simple Query
//! protocol with text results, read with the crate's own frame reader. It is deliberately
//! small: no parameters, no COPY, one statement string at a time.
//!
//! An error from the database is returned only after its ReadyForQuery, so the connection
//! stays usable (inside a failed transaction block it stays in that block: the caller rolls
//! back). A broken connection is an error of its own; the client must then be dropped.

use tokio::io::AsyncWriteExt;

use super::auth::UpstreamCredential;
use super::frame::{FrameReader, Peer};
use super::messages::Reader;
use super::messages::backend::{ErrorFields, command_tag, ready_for_query_status, rows_in_tag};
use super::messages::frontend::{Query, terminate};
use super::messages::startup::PROTOCOL_3;
use super::upstream::{Target, UpstreamError};
use crate::config::{ServiceConfig, UpstreamConfig};
use crate::net::Stream;

/// Largest message accepted from the database on the service connection.
const MAX_MESSAGE: usize = 1 << 30;

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The database could not be reached or refused the login.
    #[error("warden's service login `{user}` failed: {source}")]
    Login {
        user: String,
        #[source]
        source: UpstreamError,
    },
    /// The password's environment variable is not set.
    #[error("environment variable {0} (the password of warden's service login) is not set")]
    MissingPassword(String),
    /// The upstream has no `[upstream.service]`.
    #[error("upstream `{0}` has no [upstream.service]: warden needs its own login to the database")]
    NotConfigured(String),
    /// The upstream's server TLS settings could not be loaded.
    #[error("upstream `{upstream}`: server TLS: {message}")]
    Tls { upstream: String, message: String },
    /// The database answered with an ErrorResponse; the connection is still usable.
    #[error("{message} (SQLSTATE {code})")]
    Query { code: String, message: String },
    /// The connection broke or the database broke the protocol; drop the client.
    #[error("the service connection to the database broke: {0}")]
    Connection(String),
}

impl ServiceError {
    /// Whether the database could not be reached at all (as opposed to refusing the login or
    /// a statement).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ServiceError::Login {
                source: UpstreamError::Connect { .. } | UpstreamError::Timeout(_),
                ..
            }
        )
    }

    /// The SQLSTATE of a database error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ServiceError::Query { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Rows of text values (`None` for SQL NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// A logged-in service connection.
pub struct ServiceClient {
    reader: FrameReader<Stream>,
    /// The transaction status of the last ReadyForQuery (`I`, `T` or `E`).
    status: u8,
}

impl ServiceClient {
    /// Logs in to `target` as the service user, with `application_name` (shown in
    /// `pg_stat_activity`) and UTF-8 text.
    pub async fn connect(
        target: &Target<'_>,
        config: &ServiceConfig,
        application_name: &str,
    ) -> Result<ServiceClient, ServiceError> {
        let password = match &config.password_env {
            None => String::new(),
            Some(var) => {
                std::env::var(var).map_err(|_| ServiceError::MissingPassword(var.clone()))?
            }
        };
        let params = vec![
            ("user".to_string(), config.user.clone()),
            ("database".to_string(), config.database.clone()),
            ("application_name".to_string(), application_name.to_string()),
            ("client_encoding".to_string(), "UTF8".to_string()),
        ];
        let upstream = target
            .connect(PROTOCOL_3, &params, &UpstreamCredential::Password(password))
            .await
            .map_err(|source| ServiceError::Login {
                user: config.user.clone(),
                source,
            })?;
        Ok(ServiceClient {
            reader: FrameReader::with_buffered(
                upstream.stream,
                Peer::Server,
                MAX_MESSAGE,
                upstream.leftover,
            ),
            status: upstream.ready_status,
        })
    }

    /// Logs in to the database of `upstream` (its address, server TLS and `[upstream.service]`),
    /// giving up on connecting and logging in after `timeout`.
    pub async fn connect_upstream(
        upstream: &UpstreamConfig,
        timeout: std::time::Duration,
        application_name: &str,
    ) -> Result<ServiceClient, ServiceError> {
        let service = upstream
            .service
            .as_ref()
            .ok_or_else(|| ServiceError::NotConfigured(upstream.name.clone()))?;
        let tls = crate::tls::server_side(&upstream.server_tls).map_err(|e| ServiceError::Tls {
            upstream: upstream.name.clone(),
            message: e.to_string(),
        })?;
        let target = Target {
            address: &upstream.server,
            tls: tls.as_ref(),
            timeout,
        };
        ServiceClient::connect(&target, service, application_name).await
    }

    /// Runs `sql` (one or more statements) with the simple Query protocol; returns the rows of
    /// every result set, concatenated, as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Rows, ServiceError> {
        let mut rows = Vec::new();
        self.run(sql, |frame_rows| rows.push(frame_rows), |_| {})
            .await?;
        Ok(rows)
    }

    /// Runs `sql` (one or more statements); returns the rows they affected, summed over the
    /// command tags that report a count (`UPDATE 5`, `INSERT 0 3`, `DELETE 1`...).
    pub async fn execute(&mut self, sql: &str) -> Result<u64, ServiceError> {
        let mut affected = 0;
        self.run(sql, |_| {}, |tag| affected += rows_in_tag(tag).unwrap_or(0))
            .await?;
        Ok(affected)
    }

    /// The transaction status after the last statement: `I` idle, `T` in a transaction block,
    /// `E` in a failed transaction block.
    pub fn transaction_status(&self) -> u8 {
        self.status
    }

    /// Ends the session politely.
    pub async fn close(mut self) {
        let stream = self.reader.get_mut();
        let _ = stream.write_all(&terminate().bytes).await;
        let _ = stream.flush().await;
    }

    async fn run(
        &mut self,
        sql: &str,
        mut on_row: impl FnMut(Vec<Option<String>>),
        mut on_complete: impl FnMut(&str),
    ) -> Result<(), ServiceError> {
        let broken = |e: &dyn std::fmt::Display| ServiceError::Connection(e.to_string());
        if sql.as_bytes().contains(&0) {
            return Err(ServiceError::Query {
                code: "22021".into(),
                message: "the statement text contains a NUL byte".into(),
            });
        }
        let stream = self.reader.get_mut();
        stream
            .write_all(&Query::encode(sql).bytes)
            .await
            .map_err(|e| broken(&e))?;
        stream.flush().await.map_err(|e| broken(&e))?;
        let mut error: Option<ErrorFields> = None;
        loop {
            let frame = match self.reader.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return Err(ServiceError::Connection("closed by the database".into())),
                Err(e) => return Err(broken(&e)),
            };
            match frame.tag {
                b'D' => on_row(decode_row(frame.body()).map_err(|e| broken(&e))?),
                b'C' => on_complete(command_tag(&frame).map_err(|e| broken(&e))?),
                b'E' => {
                    let fields = ErrorFields::decode(&frame).map_err(|e| broken(&e))?;
                    if fields.is_fatal() {
                        return Err(ServiceError::Connection(format!(
                            "{} ({})",
                            fields.message, fields.code
                        )));
                    }
                    error.get_or_insert(fields);
                }
                b'Z' => {
                    self.status = ready_for_query_status(&frame).map_err(|e| broken(&e))?;
                    break;
                }
                // COPY is never started by warden's own statements; refuse one if a statement
                // does (the database then ends it with an error and ReadyForQuery).
                b'G' => {
                    let fail = super::messages::MessageBuilder::new(b'f')
                        .cstr("warden's service client does not run COPY")
                        .finish();
                    let stream = self.reader.get_mut();
                    stream
                        .write_all(&fail.bytes)
                        .await
                        .map_err(|e| broken(&e))?;
                    stream.flush().await.map_err(|e| broken(&e))?;
                }
                // RowDescription, EmptyQueryResponse, notices, ParameterStatus, notifications,
                // CopyOut data: nothing to keep.
                _ => {}
            }
        }
        match error {
            Some(e) => Err(ServiceError::Query {
                code: e.code,
                message: e.message,
            }),
            None => Ok(()),
        }
    }
}

/// The values of a DataRow, as text.
fn decode_row(body: &[u8]) -> Result<Vec<Option<String>>, super::messages::MessageError> {
    let mut r = Reader::new(body, "DataRow");
    let columns = r.count16()?;
    let mut row = Vec::with_capacity(columns);
    for _ in 0..columns {
        let len = r.i32()?;
        if len < 0 {
            row.push(None);
        } else {
            let bytes = r.bytes(len as usize)?;
            row.push(Some(String::from_utf8_lossy(bytes).into_owned()));
        }
    }
    r.finish()?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::MessageBuilder;

    #[test]
    fn data_rows_decode_nulls_and_text() {
        let frame = MessageBuilder::new(b'D')
            .i16(3)
            .i32(2)
            .bytes(b"hi")
            .i32(-1)
            .i32(0)
            .finish();
        assert_eq!(
            decode_row(frame.body()).unwrap(),
            vec![Some("hi".to_string()), None, Some(String::new())]
        );
        let short = MessageBuilder::new(b'D')
            .i16(1)
            .i32(5)
            .bytes(b"ab")
            .finish();
        assert!(decode_row(short.body()).is_err());
    }
}
