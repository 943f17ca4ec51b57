//! Cancel requests: a client may cancel only its own session's running query.
//!
//! Clients never see a database's real cancel key. Each session gets a key of warden's own
//! (BackendKeyData), mapped here to the database session's real key and address. A
//! CancelRequest arriving on any PostgreSQL listener is checked against the map — the secret
//! compared in constant time — and, if it matches, warden sends the real cancel to the right
//! database. A wrong key is ignored, as PostgreSQL ignores it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::messages::backend::BackendKeyData;
use super::messages::startup::{CANCEL_REQUEST, encode_request};
use super::upstream::Target;
use crate::config::ServerAddress;
use crate::tls::ServerTls;

/// Where a session's real cancel request goes.
#[derive(Clone)]
pub struct CancelTarget {
    pub address: ServerAddress,
    pub tls: Option<ServerTls>,
    pub key: BackendKeyData,
}

struct Entry {
    secret: Vec<u8>,
    target: CancelTarget,
}

/// Live sessions' cancel keys.
#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, Entry>>,
}

/// Removes a session's key when the session ends.
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    pid: i32,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Ok(mut entries) = self.registry.entries.lock() {
            entries.remove(&self.pid);
        }
    }
}

impl CancelRegistry {
    /// Registers a session whose database key is `target.key`; returns the key to give the
    /// client (same secret length as the database's) and the guard that unregisters it.
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> (BackendKeyData, CancelGuard) {
        let mut secret = vec![0u8; target.key.secret.len()];
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let pid = loop {
            let mut raw = [0u8; 4];
            getrandom::fill(&mut raw).expect("the OS random source failed");
            let pid = (i32::from_be_bytes(raw) & i32::MAX).max(1);
            if !entries.contains_key(&pid) {
                break pid;
            }
        };
        getrandom::fill(&mut secret).expect("the OS random source failed");
        entries.insert(
            pid,
            Entry {
                secret: secret.clone(),
                target,
            },
        );
        (
            BackendKeyData { pid, secret },
            CancelGuard {
                registry: self.clone(),
                pid,
            },
        )
    }

    /// The target of a client's cancel key, if it is valid.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<CancelTarget> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&pid)?;
        (entry.secret.len() == secret.len() && bool::from(entry.secret.ct_eq(secret)))
            .then(|| entry.target.clone())
    }

    /// Number of registered sessions.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends the real cancel request for `target` to its database.
pub async fn send_cancel(target: &CancelTarget, timeout: Duration) -> Result<(), String> {
    let t = Target {
        address: &target.address,
        tls: target.tls.as_ref(),
        timeout,
    };
    let attempt = async {
        let mut stream = t.open().await.map_err(|e| e.to_string())?;
        let mut payload = target.key.pid.to_be_bytes().to_vec();
        payload.extend_from_slice(&target.key.secret);
        stream
            .write_all(&encode_request(CANCEL_REQUEST, &payload))
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        // The database answers by closing the connection.
        let mut sink = [0u8; 64];
        let _ = stream.read(&mut sink).await;
        Ok(())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CancelTarget {
        CancelTarget {
            address: ServerAddress {
                host: "127.0.0.1".into(),
                port: 5432,
            },
            tls: None,
            key: BackendKeyData {
                pid: 77,
                secret: vec![1, 2, 3, 4],
            },
        }
    }

    #[test]
    fn keys_map_to_their_session_only_while_it_lives() {
        let registry = Arc::new(CancelRegistry::default());
        let (key, guard) = registry.register(target());
        assert_ne!(key.secret, vec![1, 2, 3, 4]);
        assert_eq!(key.secret.len(), 4);
        assert_eq!(registry.lookup(key.pid, &key.secret).unwrap().key.pid, 77);
        let mut wrong = key.secret.clone();
        wrong[0] ^= 1;
        assert!(registry.lookup(key.pid, &wrong).is_none());
        assert!(registry.lookup(key.pid, &key.secret[..3]).is_none());
        drop(guard);
        assert!(registry.lookup(key.pid, &key.secret).is_none());
        assert!(registry.is_empty());
    }
}
