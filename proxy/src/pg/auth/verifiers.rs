//! Where a user's verifier comes from: the users file first, then the auth query.

use std::sync::Arc;

use super::Verifier;
use super::query::{AuthQuery, AuthQueryError};
use super::users_file::UsersFile;
use crate::pg::upstream::Target;

/// The verifier sources of one upstream.
pub struct VerifierSource {
    pub users_file: Option<Arc<UsersFile>>,
    pub query: Option<Arc<AuthQuery>>,
}

impl VerifierSource {
    /// The verifier for `user`, or `None` when no source knows the user.
    pub async fn lookup(
        &self,
        target: &Target<'_>,
        user: &str,
    ) -> Result<Option<Verifier>, AuthQueryError> {
        if let Some(v) = self.users_file.as_ref().and_then(|f| f.get(user)) {
            return Ok(Some(v.clone()));
        }
        match &self.query {
            Some(q) => q.lookup(target, user).await,
            None => Ok(None),
        }
    }
}
