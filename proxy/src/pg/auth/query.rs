//! Fetching a user's verifier from the database (the `[upstream.auth.query]` section).
//!
//! Like PgBouncer's `auth_query`: warden logs in as a dedicated user and runs a query that takes
//! the user name as `$1` and returns the stored verifier. The connection is kept and reused;
//! answers are cached for a short time so a burst of logins costs one query per user. The
//! auth user's password, when it needs one, comes from an environment variable, never a file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{UpstreamCredential, Verifier};
use crate::config::AuthQueryConfig;
use crate::net::Stream;
use crate::pg::frame::{FrameReader, Peer};
use crate::pg::messages::Reader;
use crate::pg::messages::backend::ErrorFields;
use crate::pg::messages::frontend::{Bind, Execute, Parse, sync};
use crate::pg::messages::startup::PROTOCOL_3;
use crate::pg::upstream::{Target, UpstreamError};

/// Why a verifier could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum AuthQueryError {
    #[error("the auth query user could not log in: {0}")]
    Login(#[from] UpstreamError),
    #[error("the auth query failed: {} ({})", .0.message, .0.code)]
    Query(ErrorFields),
    #[error("the auth query connection broke: {0}")]
    Connection(String),
    #[error("environment variable {0} (the auth query user's password) is not set")]
    MissingPassword(String),
    #[error("the auth query returned a value that is not a SCRAM-SHA-256 or md5 verifier")]
    NotAVerifier,
}

/// A verifier source backed by a query on the database.
pub struct AuthQuery {
    config: AuthQueryConfig,
    connection: Mutex<Option<FrameReader<Stream>>>,
    cache: std::sync::Mutex<HashMap<String, (Instant, Option<Verifier>)>>,
}

impl AuthQuery {
    pub fn new(config: AuthQueryConfig) -> Self {
        Self {
            config,
            connection: Mutex::new(None),
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The verifier of `user`, or `None` when the database has none (no such user, or no
    /// password).
    pub async fn lookup(
        &self,
        target: &Target<'_>,
        user: &str,
    ) -> Result<Option<Verifier>, AuthQueryError> {
        if let Some(hit) = self.cached(user) {
            return Ok(hit);
        }
        let mut connection = self.connection.lock().await;
        // Another session may have fetched it while we waited for the connection.
        if let Some(hit) = self.cached(user) {
            return Ok(hit);
        }
        // A broken cached connection is replaced once.
        let mut attempts = 0;
        let value = loop {
            attempts += 1;
            if connection.is_none() {
                *connection = Some(self.login(target).await?);
            }
            let reader = connection.as_mut().expect("set above");
            match run_query(reader, &self.config.sql, user).await {
                Ok(v) => break v,
                Err(AuthQueryError::Connection(_)) if attempts == 1 => {
                    *connection = None;
                }
                Err(e) => {
                    if matches!(e, AuthQueryError::Connection(_)) {
                        *connection = None;
                    }
                    return Err(e);
                }
            }
        };
        let verifier = match value {
            None => None,
            Some(text) => Some(Verifier::parse(&text).ok_or(AuthQueryError::NotAVerifier)?),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(user.to_string(), (Instant::now(), verifier.clone()));
        }
        Ok(verifier)
    }

    fn cached(&self, user: &str) -> Option<Option<Verifier>> {
        let cache = self.cache.lock().ok()?;
        let (at, v) = cache.get(user)?;
        (at.elapsed() < self.config.cache).then(|| v.clone())
    }

    async fn login(&self, target: &Target<'_>) -> Result<FrameReader<Stream>, AuthQueryError> {
        let password = match &self.config.password_env {
            None => String::new(),
            Some(var) => {
                std::env::var(var).map_err(|_| AuthQueryError::MissingPassword(var.clone()))?
            }
        };
        let params = vec![
            ("user".to_string(), self.config.user.clone()),
            ("database".to_string(), self.config.database.clone()),
            (
                "application_name".to_string(),
                "warden auth query".to_string(),
            ),
        ];
        let upstream = target
            .connect(PROTOCOL_3, &params, &UpstreamCredential::Password(password))
            .await?;
        Ok(FrameReader::with_buffered(
            upstream.stream,
            Peer::Server,
            1 << 20,
            upstream.leftover,
        ))
    }

    /// How long answers are reused.
    pub fn cache_ttl(&self) -> Duration {
        self.config.cache
    }
}

/// Runs `sql` with `$1 = user` on an idle connection; returns the first column of the first row.
async fn run_query(
    reader: &mut FrameReader<Stream>,
    sql: &str,
    user: &str,
) -> Result<Option<String>, AuthQueryError> {
    let broken = |e: &dyn std::fmt::Display| AuthQueryError::Connection(e.to_string());
    let mut out = Vec::new();
    out.extend_from_slice(&Parse::encode("", sql, &[]).bytes);
    out.extend_from_slice(
        &Bind {
            portal: "",
            statement: "",
            param_formats: vec![],
            params: vec![Some(user.as_bytes())],
            result_formats: vec![],
        }
        .encode()
        .bytes,
    );
    out.extend_from_slice(&Execute::encode("", 1).bytes);
    out.extend_from_slice(&sync().bytes);
    let stream = reader.get_mut();
    stream.write_all(&out).await.map_err(|e| broken(&e))?;
    stream.flush().await.map_err(|e| broken(&e))?;
    let mut value = None;
    let mut error = None;
    loop {
        let frame = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => return Err(AuthQueryError::Connection("closed".into())),
            Err(e) => return Err(broken(&e)),
        };
        match frame.tag {
            b'D' if value.is_none() => {
                let mut r = Reader::new(frame.body(), "DataRow");
                let columns = r.count16().map_err(|e| broken(&e))?;
                if columns >= 1 {
                    let len = r.i32().map_err(|e| broken(&e))?;
                    if len >= 0 {
                        let bytes = r.bytes(len as usize).map_err(|e| broken(&e))?;
                        value = Some(String::from_utf8_lossy(bytes).into_owned());
                    }
                }
            }
            b'E' => error = Some(ErrorFields::decode(&frame).map_err(|e| broken(&e))?),
            b'Z' => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(AuthQueryError::Query(e)),
        None => Ok(value),
    }
}
