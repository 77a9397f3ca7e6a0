//! Provider `file`: the keyring in clear in a 0600 file (`veil keygen --out FILE`). For development: PCI DSS
//! 3.6.1.2 does not accept a clear key file in production — use `shares`.

use std::path::PathBuf;

use super::{KeyProvider, ProviderError};
use crate::crypto::keys::{KeyError, Keyring};
use crate::crypto::Secret;

/// The key file of `[vault] master_key_file` or `master_key = { provider = "file", path = … }`.
pub struct FileProvider {
    path: PathBuf,
}

impl FileProvider {
    pub fn new(path: PathBuf) -> FileProvider {
        FileProvider { path }
    }
}

impl KeyProvider for FileProvider {
    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }

    fn load(&self) -> Result<Secret<String>, ProviderError> {
        let text = Keyring::read_text(&self.path)?;
        if crate::crypto::blob::is_encrypt_only(text.expose()) {
            return Err(KeyError::EncryptOnly { path: self.path.display().to_string() }.into());
        }
        Ok(text)
    }

    fn store(&self, text: &Secret<String>) -> Result<(), ProviderError> {
        Keyring::from_text(text, &self.describe())?;
        super::atomic::replace(&self.path, text.expose().as_bytes())
    }

    /// The file's own rotation: every line kept verbatim, a lock against a concurrent one.
    fn rotate(&self) -> Result<u32, ProviderError> {
        Keyring::rotate_file(&self.path).map_err(|e| match e {
            KeyError::Busy { lock } => ProviderError::Busy { lock },
            e => ProviderError::Key(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn loads_rotates_and_stores_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        Keyring::generate_file(&path).unwrap();
        let p = FileProvider::new(path.clone());
        assert!(p.describe().contains("master.key"));
        let v1 = p.keyring().unwrap();
        assert_eq!(p.rotate().unwrap(), 2);
        let ring = p.keyring().unwrap();
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(ring.derive("seal", "pan", 1).unwrap().expose(), v1.derive("seal", "pan", 1).unwrap().expose());
        let text = p.load().unwrap();
        p.store(&text).unwrap();
        assert_eq!(p.load().unwrap().expose(), text.expose());
        assert!(p.store(&Secret::new("not a keyring".into())).is_err(), "a bad keyring is never written");
        assert_eq!(p.load().unwrap().expose(), text.expose());
    }

    #[test]
    fn retiring_removes_the_version_from_the_file_and_never_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        Keyring::generate_file(&path).unwrap();
        let v1_line = std::fs::read_to_string(&path).unwrap().lines().nth(1).unwrap().to_owned();
        let p = FileProvider::new(path.clone());
        assert_eq!(p.rotate().unwrap(), 2);
        assert!(matches!(p.retire(2), Err(ProviderError::Key(KeyError::Newest { version: 2, .. }))));
        assert!(matches!(p.retire(5), Err(ProviderError::Key(KeyError::NoSuchVersion { version: 5, .. }))));
        p.retire(1).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&v1_line) && text.starts_with("# veil master keyring"), "{text}");
        assert_eq!(p.keyring().unwrap().versions().collect::<Vec<_>>(), vec![2]);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn a_proxys_encrypt_only_key_is_no_master_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy-encrypt.key");
        crate::crypto::BlobKeys::generate_file(&path).unwrap();
        let err = FileProvider::new(path).keyring().unwrap_err().to_string();
        assert!(err.contains("encrypt-only key file, not a master keyring"), "{err}");
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let err = FileProvider::new("/nonexistent/master.key".into()).keyring().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/master.key"), "{err}");
    }
}
