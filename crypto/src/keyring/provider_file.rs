//! Master key from a file: 32 raw bytes, or 64 hex digits, or 44 base64 characters.
//!
//! The file must be readable by its owner only: a master key that every local account can read
//! protects nothing. Group or world permissions are refused with the `chmod` that fixes them.

use std::io::Write as _;
use std::path::Path;

use super::master::{LocalMasterKey, MasterKeyError};

/// Reads the master key from `path`, refusing files others can read or write.
pub fn master_key_from_file(path: &Path) -> Result<LocalMasterKey, MasterKeyError> {
    let source = format!("master key file {}", path.display());
    let meta = std::fs::metadata(path)
        .map_err(|e| MasterKeyError::Unavailable(format!("{source}: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::Unavailable(format!(
                "{source} is accessible to group or others (mode {mode:03o}); \
                 run `chmod 600 {}` and make sure only Warden's account owns it",
                path.display()
            )));
        }
    }
    if !meta.is_file() {
        return Err(MasterKeyError::Unavailable(format!(
            "{source} is not a regular file"
        )));
    }
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| MasterKeyError::Unavailable(format!("{source}: {e}")))?,
    );
    LocalMasterKey::parse(&bytes, source)
}

/// Generates a master key into a new file (mode 0600, hex). Refuses to overwrite a file.
pub fn write_new_master_key_file(path: &Path) -> Result<LocalMasterKey, MasterKeyError> {
    let source = format!("master key file {}", path.display());
    let key = LocalMasterKey::generate(source.clone())
        .map_err(|e| MasterKeyError::Unavailable(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        MasterKeyError::Unavailable(if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{source} already exists; Warden never overwrites a master key")
        } else {
            format!("{source}: {e}")
        })
    })?;
    let mut text = key.to_hex();
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| MasterKeyError::Unavailable(format!("{source}: {e}")))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::master::MasterKey as _;

    #[test]
    fn generates_reads_and_refuses_overwrite_and_loose_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let made = write_new_master_key_file(&path).unwrap();
        let read = master_key_from_file(&path).unwrap();
        let w = made
            .wrap(crate::keyring::WrapAlgorithm::Sm4Gcm, b"x", b"")
            .unwrap();
        assert_eq!(
            read.unwrap(crate::keyring::WrapAlgorithm::Sm4Gcm, &w, b"")
                .unwrap()
                .as_slice(),
            b"x"
        );
        assert!(
            write_new_master_key_file(&path)
                .err()
                .unwrap()
                .to_string()
                .contains("never overwrites")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = master_key_from_file(&path).err().unwrap().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
        assert!(master_key_from_file(&dir.path().join("absent")).is_err());
    }
}
