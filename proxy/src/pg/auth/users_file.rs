//! The users file: the verifiers warden authenticates clients against.
//!
//! One user per line, `"name" "verifier"`, in the format PgBouncer's `auth_file` uses; a `"`
//! inside a quoted field is written `""`; `#` starts a comment. The verifier is what
//! PostgreSQL stores in `pg_authid.rolpassword`. Cleartext passwords are refused: a line that
//! holds neither a SCRAM nor an md5 verifier is an error that names the line.

use std::collections::HashMap;
use std::path::Path;

use super::Verifier;
use crate::config::ConfigError;

/// The parsed users file.
#[derive(Debug, Clone, Default)]
pub struct UsersFile {
    users: HashMap<String, Verifier>,
}

impl UsersFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<UsersFile, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError::whole_file(
                path,
                format!("cannot read the users file: {e}"),
            )]
        })?;
        Self::parse(path, &text)
    }

    /// Parses users-file `text` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<UsersFile, Vec<ConfigError>> {
        let mut users = HashMap::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match parse_line(trimmed) {
                Err(problem) => errors.push(ConfigError::at_line(path, line_no, problem)),
                Ok((name, secret)) => match Verifier::parse(&secret) {
                    None => errors.push(ConfigError::at_line(
                        path,
                        line_no,
                        format!(
                            "the entry for `{name}` is not a SCRAM-SHA-256 or md5 verifier; warden never stores cleartext passwords (copy pg_authid.rolpassword)"
                        ),
                    )),
                    Some(verifier) => {
                        if users.insert(name.clone(), verifier).is_some() {
                            errors.push(ConfigError::at_line(
                                path,
                                line_no,
                                format!("user `{name}` appears twice"),
                            ));
                        }
                    }
                },
            }
        }
        if errors.is_empty() {
            Ok(UsersFile { users })
        } else {
            Err(errors)
        }
    }

    /// The verifier for `user`.
    pub fn get(&self, user: &str) -> Option<&Verifier> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Splits `"name" "secret"` into its two fields.
fn parse_line(line: &str) -> Result<(String, String), String> {
    let mut chars = line.chars().peekable();
    let mut fields = Vec::new();
    while fields.len() < 2 {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return Err("expected `\"name\" \"verifier\"`".into());
        }
        let mut field = String::new();
        loop {
            match chars.next() {
                None => return Err("a quoted field is not closed".into()),
                Some('"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                Some('"') => break,
                Some(c) => field.push(c),
            }
        }
        fields.push(field);
    }
    let rest: String = chars.collect();
    let rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err("unexpected text after the verifier".into());
    }
    let secret = fields.pop().unwrap_or_default();
    let name = fields.pop().unwrap_or_default();
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    Ok((name, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAM: &str = "SCRAM-SHA-256$4096:QJAPO3yW40sMqM8LxObOKw==$bAAlFoCdAtnD/2rndy87yvJc/Tp/2b1IAVjKPGNgc3M=:N+dI4iBZdtHIOiD9bBi7QsPRBRWpYRunVLzOtHXX6bU=";

    #[test]
    fn parses_scram_and_md5_entries_and_quoted_names() {
        let text = format!(
            "# users\n\"alice\" \"{SCRAM}\"\n  \"bob \"\"b\"\"\" \"md530399db8e1161380581351beeeab18ed\" # md5\n\n"
        );
        let f = UsersFile::parse(Path::new("u.txt"), &text).unwrap();
        assert!(matches!(f.get("alice"), Some(Verifier::Scram(_))));
        assert!(matches!(f.get("bob \"b\""), Some(Verifier::Md5(_))));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn cleartext_and_malformed_lines_name_their_line() {
        let text =
            format!("\"alice\" \"{SCRAM}\"\n\"bob\" \"hunter2\"\nbob md5\n\"alice\" \"{SCRAM}\"\n");
        let errors = UsersFile::parse(Path::new("u.txt"), &text).unwrap_err();
        let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("u.txt:2: ") && errors[0].contains("cleartext"));
        assert!(errors[1].starts_with("u.txt:3: "));
        assert!(errors[2].starts_with("u.txt:4: ") && errors[2].contains("twice"));
    }
}
