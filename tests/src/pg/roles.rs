//! Roles with known passwords, databases, and warden users files made from the verifiers.
//!
//! Warden authenticates clients itself against the verifier PostgreSQL stores in
//! `pg_authid.rolpassword` (docs/CONFIG.md, "Users file"), so the harness creates a role with
//! a password, reads the verifier back, and hands warden only that: no cleartext password ever
//! reaches warden's files.

use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::pg::instance::{MD5_GROUP, PgInstance};
use crate::pg::target::Login;
use crate::scratch::unique_name;

/// How a role's password is stored, and so how it authenticates over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordAuth {
    /// A `SCRAM-SHA-256$...` verifier; pg_hba.conf demands scram-sha-256.
    Scram,
    /// An `md5...` hash; the role joins `md5_users`, for which pg_hba.conf says md5.
    Md5,
}

/// A login role and its cleartext password (known to the test, never to warden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub password: String,
    pub auth: PasswordAuth,
}

impl Role {
    /// Credentials for this role in `database`.
    pub fn login(&self, database: &str) -> Login {
        Login {
            user: self.name.clone(),
            password: self.password.clone(),
            database: database.to_string(),
        }
    }
}

impl PgInstance {
    /// Creates a login role named `<prefix>_<pid>_<n>` with a fresh password, stored as
    /// `auth` says, plus `attributes` (such as `CREATEDB`).
    pub fn create_role(&self, prefix: &str, auth: PasswordAuth, attributes: &str) -> Result<Role> {
        let name = unique_name(prefix);
        self.create_named_role(&name, auth, attributes)?;
        Ok(Role {
            password: password_for(&name),
            name,
            auth,
        })
    }

    /// Creates the login role `name` (which must be a plain lowercase identifier).
    pub fn create_named_role(
        &self,
        name: &str,
        auth: PasswordAuth,
        attributes: &str,
    ) -> Result<Role> {
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("role name {name:?} must be a plain lowercase identifier");
        }
        let password = password_for(name);
        let sql = match auth {
            PasswordAuth::Scram => format!(
                "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE {name} LOGIN PASSWORD '{password}' {attributes};"
            ),
            PasswordAuth::Md5 => format!(
                "SET password_encryption = 'md5'; \
                 CREATE ROLE {name} LOGIN PASSWORD '{password}' {attributes}; \
                 GRANT {MD5_GROUP} TO {name};"
            ),
        };
        self.admin_sql(&sql)
            .with_context(|| format!("cannot create role {name}"))?;
        let verifier = self.verifier(name)?;
        let expected = match auth {
            PasswordAuth::Scram => "SCRAM-SHA-256$",
            PasswordAuth::Md5 => "md5",
        };
        if !verifier.starts_with(expected) {
            bail!("role {name} was stored as {verifier:?}, expected a {expected} verifier");
        }
        Ok(Role {
            name: name.to_string(),
            password,
            auth,
        })
    }

    /// The verifier stored for role `name` (`pg_authid.rolpassword`).
    pub fn verifier(&self, name: &str) -> Result<String> {
        let verifier = self.admin_sql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{name}'"
        ))?;
        if verifier.is_empty() {
            bail!("role {name} has no password");
        }
        Ok(verifier)
    }

    /// A warden users file for `roles`: one `"name" "verifier"` line each.
    pub fn users_file(&self, roles: &[&str]) -> Result<String> {
        let mut text = String::from("# Made by the warden test harness from pg_authid.\n");
        for name in roles {
            let verifier = self.verifier(name)?;
            text.push_str(&format!("\"{name}\" \"{verifier}\"\n"));
        }
        Ok(text)
    }

    /// Creates a database named `<prefix>_<pid>_<n>` owned by `owner`.
    pub fn create_database(&self, prefix: &str, owner: &str) -> Result<String> {
        let name = unique_name(prefix);
        self.admin_sql(&format!("CREATE DATABASE {name} OWNER {owner}"))
            .with_context(|| format!("cannot create database {name}"))?;
        Ok(name)
    }
}

/// The password the harness gives role `name`: unique per role and per test process, and
/// in need of quoting in a conninfo string (it has spaces).
pub fn password_for(name: &str) -> String {
    static SECRET: OnceLock<[u8; 16]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut bytes = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        bytes
    });
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        name.as_bytes(),
    );
    format!("Pw {name} {}!", hex::encode(&tag.as_ref()[..6]))
}
