//! Master key from an environment variable (64 hex digits or 44 base64 characters).
//!
//! Convenient for containers and systemd `LoadCredential`/`Environment=` setups; the variable's
//! value is read once at start-up and not kept anywhere but in the key itself.

use super::master::{LocalMasterKey, MasterKeyError};

/// Reads the master key from `var`.
pub fn master_key_from_env(var: &str) -> Result<LocalMasterKey, MasterKeyError> {
    let source = format!("environment variable {var}");
    match std::env::var_os(var) {
        None => Err(MasterKeyError::Unavailable(format!(
            "{source} is not set; set it to the master key (64 hex digits), or configure another provider"
        ))),
        Some(value) => {
            let value = zeroize::Zeroizing::new(value.into_encoded_bytes());
            LocalMasterKey::parse(&value, source)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_is_explained() {
        let err = master_key_from_env("WARDEN_TEST_SURELY_UNSET_VARIABLE")
            .err()
            .unwrap();
        assert!(err.to_string().contains("is not set"), "{err}");
    }

    #[test]
    fn reads_a_variable_the_test_environment_has() {
        // PATH exists everywhere and is not a key: the error names the variable.
        let err = master_key_from_env("PATH").err().unwrap();
        assert!(
            err.to_string().contains("environment variable PATH"),
            "{err}"
        );
    }
}
