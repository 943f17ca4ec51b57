//! An upstream's encryption settings: its policy file and warden's service login.
//!
//! `policy = "policy.toml"` names the encryption policy (the `[[encrypt]]` entries of
//! `warden_encryption::policy`). [`super::Config::load`] reads and parses it, and reports its
//! problems like the configuration's own, with the policy file's name and line. A policy that
//! declares columns needs the keyring (`[keys]`), a `[upstream.service]` login (warden reads the
//! catalog and runs the migrations with it). On MySQL upstreams the service login's `database`
//! defaults to `information_schema` (the catalog queries name every table with its database)
//! and `search_path` is not used: a MySQL session resolves table names in its own current
//! database.

use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;
use warden_encryption::EncryptionPolicy;

use super::file::FileService;
use super::load::Checker;
use super::{ConfigError, Protocol, ServiceConfig};

/// The checked encryption settings of one upstream.
pub(super) struct EncryptionSettings {
    pub policy_path: Option<PathBuf>,
    pub policy: Option<Arc<EncryptionPolicy>>,
    pub service: Option<ServiceConfig>,
}

impl Checker<'_> {
    /// Checks `policy` and `[upstream.service]`; `has_keys` says whether the file has a
    /// `[keys]` table. Problems are recorded; what could be checked is returned.
    pub(super) fn encryption(
        &mut self,
        policy: Option<Spanned<String>>,
        service: Option<Spanned<FileService>>,
        name: &Spanned<String>,
        protocol: Option<Protocol>,
        has_keys: bool,
    ) -> EncryptionSettings {
        let service_span = service.as_ref().map(Spanned::span);
        let database_given = service
            .as_ref()
            .is_some_and(|s| s.get_ref().database.is_some());
        let mut settings = EncryptionSettings {
            policy_path: None,
            policy: None,
            service: service.and_then(|s| self.service(s)),
        };
        if protocol == Some(Protocol::Mysql)
            && !database_given
            && let Some(service) = &mut settings.service
        {
            service.database = "information_schema".into();
        }
        let Some(policy) = policy else {
            return settings;
        };
        let path = self.path_value(&policy);
        settings.policy_path = Some(path.clone());
        if !self.open_files {
            return settings;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                self.error(
                    policy.span(),
                    format!("cannot read the policy file `{}`: {e}", path.display()),
                );
                return settings;
            }
        };
        let parsed = match EncryptionPolicy::parse(&text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                self.errors.extend(errors.into_iter().map(|e| {
                    if e.line > 0 {
                        ConfigError::at_line(&path, e.line, e.message)
                    } else {
                        ConfigError::whole_file(&path, e.message)
                    }
                }));
                return settings;
            }
        };
        if !parsed.columns.is_empty() {
            let declares = format!(
                "the policy of upstream `{}` declares {} encrypted column(s)",
                name.get_ref(),
                parsed.columns.len()
            );
            if !has_keys {
                self.error(
                    policy.span(),
                    format!(
                        "{declares}, which need the keyring: add a [keys] table naming the keyring and its master key"
                    ),
                );
            }
            if service_span.is_none() {
                self.error(
                    policy.span(),
                    format!(
                        "{declares}, which need [upstream.service]: the login warden uses to read the catalog and run `warden encrypt`"
                    ),
                );
            }
        }
        settings.policy = Some(Arc::new(parsed));
        settings
    }

    /// `[upstream.service]`.
    fn service(&mut self, service: Spanned<FileService>) -> Option<ServiceConfig> {
        let span = service.span();
        let service = service.into_inner();
        if service.user.get_ref().is_empty() {
            self.error(service.user.span(), "[upstream.service] `user` is empty");
            return None;
        }
        let search_path = match service.search_path {
            None => vec!["public".to_string()],
            Some(list) => {
                let at = list.span();
                let list = list.into_inner();
                if list.is_empty() || list.iter().any(String::is_empty) {
                    self.error(
                        at,
                        "[upstream.service] `search_path` must list schema names, none empty",
                    );
                    return None;
                }
                list
            }
        };
        if let Some(env) = &service.password_env
            && env.get_ref().is_empty()
        {
            self.error(span, "[upstream.service] `password_env` is empty");
            return None;
        }
        Some(ServiceConfig {
            user: service.user.into_inner(),
            password_env: service.password_env.map(Spanned::into_inner),
            database: service
                .database
                .map(Spanned::into_inner)
                .unwrap_or_else(|| "postgres".into()),
            search_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const POLICY: &str = "[[encrypt]]\ncolumn = \"customers.id_card\"\nkey = \"id\"\nalgorithm = \"sm4\"\n\
                          mode = \"deterministic\"\ntype = \"varchar(18)\"\n";

    fn config(upstream_extra: &str, tail: &str) -> String {
        format!(
            "[[upstream]]\nname = \"main\"\nprotocol = \"postgres\"\nlisten = \"127.0.0.1:6432\"\n\
             server = \"127.0.0.1:5432\"\n{upstream_extra}\n[upstream.auth]\nusers_file = \"users.txt\"\n{tail}"
        )
    }

    const KEYS: &str =
        "[keys]\nkeyring = \"ring.json\"\nmaster_key = { provider = \"file\", path = \"m.key\" }\n";
    const SERVICE: &str =
        "[upstream.service]\nuser = \"warden\"\npassword_env = \"WARDEN_SERVICE_PASSWORD\"\n";

    /// Loads `text` as `w.toml` next to `policy.toml` holding `policy`.
    fn load(text: &str, policy: &str) -> Result<Config, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.txt"), "").unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map_err(|e| {
            e.0.iter()
                .map(|e| {
                    e.to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                })
                .collect()
        })
    }

    #[test]
    fn the_policy_is_loaded_with_the_service_login() {
        let text = config("policy = \"policy.toml\"", &format!("{SERVICE}\n{KEYS}"));
        let c = load(&text, POLICY).unwrap();
        let u = &c.upstreams[0];
        assert!(u.policy_path.as_ref().unwrap().ends_with("policy.toml"));
        assert_eq!(u.encryption_policy().unwrap().columns[0].table, "customers");
        let service = u.service.as_ref().unwrap();
        assert_eq!(service.user, "warden");
        assert_eq!(
            service.password_env.as_deref(),
            Some("WARDEN_SERVICE_PASSWORD")
        );
        assert_eq!(service.database, "postgres");
        assert_eq!(service.search_path, ["public"]);

        // `parse` opens no files: the path is known, the policy is not loaded.
        let c = Config::parse(Path::new("/etc/w/w.toml"), &text).unwrap();
        assert_eq!(
            c.upstreams[0].policy_path.as_deref(),
            Some(Path::new("/etc/w/policy.toml"))
        );
        assert!(c.upstreams[0].policy.is_none());

        // An empty policy needs neither keys nor a service login.
        let c = load(&config("policy = \"policy.toml\"", ""), "").unwrap();
        assert!(c.upstreams[0].policy.is_some());
        assert!(c.upstreams[0].encryption_policy().is_none());
    }

    #[test]
    fn policy_problems_name_the_policy_file_and_line() {
        let text = config("policy = \"policy.toml\"", &format!("{SERVICE}\n{KEYS}"));
        let bad = POLICY.replace("deterministic", "sideways") + "\n[[encrypt]]\ncolumn = \"a.b\"\n";
        let e = load(&text, &bad).unwrap_err();
        assert!(!e.is_empty(), "{e:?}");
        assert!(e.iter().all(|e| e.starts_with("policy.toml:")), "{e:?}");
        let e = load(&text, &POLICY.replace("deterministic", "sideways")).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("policy.toml:5: "), "{e:?}");
        let e = load(&config("policy = \"missing.toml\"", KEYS), "").unwrap_err();
        assert!(
            e[0].starts_with("w.toml:6:") && e[0].contains("cannot read the policy file"),
            "{e:?}"
        );
    }

    #[test]
    fn columns_need_keys_and_a_service_login() {
        let e = load(&config("policy = \"policy.toml\"", ""), POLICY).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().all(|e| e.starts_with("w.toml:6:")), "{e:?}");
        assert!(e[0].contains("need the keyring"), "{e:?}");
        assert!(e[1].contains("need [upstream.service]"), "{e:?}");
        let e = load(
            &config(
                "policy = \"policy.toml\"",
                &format!("[upstream.service]\nuser = \"w\"\nsearch_path = []\n{KEYS}"),
            ),
            POLICY,
        )
        .unwrap_err();
        assert!(e[0].contains("search_path"), "{e:?}");
        let e = load(
            &config("", "[upstream.service]\nuser = \"w\"\nbogus = 1\n"),
            "",
        )
        .unwrap_err();
        assert!(e[0].contains("bogus"), "{e:?}");
    }

    #[test]
    fn mysql_upstreams_take_a_policy_and_a_service_login() {
        let text = format!(
            "[[upstream]]\nname = \"m\"\nprotocol = \"mysql\"\nlisten = \"127.0.0.1:3307\"\n\
             server = \"127.0.0.1:3306\"\npolicy = \"policy.toml\"\n{SERVICE}\n{KEYS}"
        );
        let c = load(&text, POLICY).unwrap();
        let u = &c.upstreams[0];
        assert_eq!(u.encryption_policy().unwrap().columns.len(), 1);
        assert_eq!(u.service.as_ref().unwrap().database, "information_schema");
        let e = load(&text.replace(&SERVICE.to_string(), ""), POLICY).unwrap_err();
        assert!(e[0].contains("need [upstream.service]"), "{e:?}");
    }
}
