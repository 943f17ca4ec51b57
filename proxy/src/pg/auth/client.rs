//! Authenticating a client: warden plays the PostgreSQL server's part of SCRAM-SHA-256 or md5
//! against the stored verifier, and keeps what it needs to log in upstream.
//!
//! A user warden knows nothing about goes through a SCRAM exchange with a mock verifier that
//! can never succeed, as PostgreSQL does, so a client cannot tell unknown users from wrong
//! passwords.

use tokio::io::AsyncWriteExt;

use super::scram::{ScramError, ScramServer, mock_verifier};
use super::{UpstreamCredential, Verifier, md5};
use crate::net::Stream;
use crate::pg::frame::{Frame, FrameError, FrameReader};
use crate::pg::messages::backend::{
    AUTH_MD5, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL, authentication, authentication_sasl,
};
use crate::pg::messages::frontend::{SaslInitialResponse, password_payload};

/// Why a client did not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// Wrong password, unknown user, failed channel binding: the client is told only that
    /// authentication failed; `reason` is for the audit trail and the log.
    #[error("authentication failed: {reason}")]
    Failed { reason: String },
    #[error("the client broke the authentication exchange: {0}")]
    Protocol(String),
    #[error("the client connection failed: {0}")]
    Frame(#[from] FrameError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ScramError> for ClientAuthError {
    fn from(e: ScramError) -> Self {
        match e {
            ScramError::Malformed(m) => ClientAuthError::Protocol(m.to_string()),
            ScramError::BadProof => ClientAuthError::Failed {
                reason: "wrong password (the SCRAM proof does not match the verifier)".into(),
            },
            other => ClientAuthError::Failed {
                reason: other.to_string(),
            },
        }
    }
}

/// Runs the exchange for `user` on a client in the startup phase.
///
/// `channel_binding` is the `tls-server-end-point` data of warden's certificate when the client
/// is on TLS; `mock_secret` derives mock salts for unknown users.
pub async fn authenticate(
    client: &mut FrameReader<Stream>,
    user: &str,
    verifier: Option<Verifier>,
    channel_binding: Option<Vec<u8>>,
    mock_secret: &[u8; 32],
) -> Result<UpstreamCredential, ClientAuthError> {
    match verifier {
        Some(Verifier::Md5(v)) => {
            let salt = md5::new_salt();
            send(client, &authentication(AUTH_MD5, &salt)).await?;
            let answer = expect_password(client).await?;
            let answer = answer.body();
            let answer = answer.strip_suffix(&[0]).unwrap_or(answer);
            if v.check(&salt, answer) {
                Ok(UpstreamCredential::Md5(v))
            } else {
                Err(ClientAuthError::Failed {
                    reason: "wrong md5 password".into(),
                })
            }
        }
        Some(Verifier::Scram(v)) => {
            let accepted = scram(client, ScramServer::new(v.clone(), channel_binding)).await?;
            Ok(UpstreamCredential::Scram {
                client_key: accepted,
                verifier: v,
            })
        }
        None => {
            let server = ScramServer::new(mock_verifier(user, mock_secret), channel_binding);
            scram(client, server).await?;
            // A mock verifier cannot accept a proof; this is only reached if it somehow did.
            Err(ClientAuthError::Failed {
                reason: "unknown user".into(),
            })
        }
    }
}

async fn scram(
    client: &mut FrameReader<Stream>,
    mut server: ScramServer,
) -> Result<[u8; 32], ClientAuthError> {
    send(client, &authentication_sasl(&server.mechanisms())).await?;
    let first = expect_password(client).await?;
    let initial = SaslInitialResponse::decode(&first)
        .map_err(|e| ClientAuthError::Protocol(e.to_string()))?;
    let server_first = server.client_first(initial.mechanism, initial.data)?;
    send(
        client,
        &authentication(AUTH_SASL_CONTINUE, server_first.as_bytes()),
    )
    .await?;
    let last = expect_password(client).await?;
    let accepted = server.client_final(password_payload(&last))?;
    send(
        client,
        &authentication(AUTH_SASL_FINAL, accepted.server_final.as_bytes()),
    )
    .await?;
    Ok(accepted.client_key)
}

async fn send(client: &mut FrameReader<Stream>, frame: &Frame) -> Result<(), ClientAuthError> {
    let stream = client.get_mut();
    stream.write_all(&frame.bytes).await?;
    stream.flush().await?;
    Ok(())
}

async fn expect_password(client: &mut FrameReader<Stream>) -> Result<Frame, ClientAuthError> {
    match client.next().await? {
        Some(frame) if frame.tag == b'p' => Ok(frame),
        Some(frame) => Err(ClientAuthError::Protocol(format!(
            "expected a password message, got message type {:?}",
            frame.tag as char
        ))),
        None => Err(ClientAuthError::Protocol(
            "the client closed the connection during authentication".into(),
        )),
    }
}
