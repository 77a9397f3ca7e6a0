//! Replacing a key-custody file atomically: a 0600 temp file beside it (created exclusively, so it doubles as a
//! lock), fsynced, renamed over the target, and the directory fsynced. A crash leaves the old or the new file.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::ProviderError;

/// Writes `bytes` as the new content of `path` (created if missing), mode 0600.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), ProviderError> {
    let shown = path.display().to_string();
    let target = match std::fs::canonicalize(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(source) => return Err(ProviderError::Read { path: shown, source }),
    };
    let dir = match target.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    let mut tmp_name = target.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".rotating");
    let tmp = dir.join(tmp_name);
    let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ProviderError::Busy { lock: tmp.display().to_string() })
        }
        Err(source) => return Err(ProviderError::Write { path: tmp.display().to_string(), source }),
    };
    let written = file
        .write_all(bytes)
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &target))
        .map_err(|source| ProviderError::Write { path: shown.clone(), source });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ProviderError::Write { path: dir.display().to_string(), source })
}

/// Creates `path` with `bytes`, mode 0600, never overwriting (parent directories created).
pub fn create_new(path: &Path, bytes: &[u8]) -> Result<(), ProviderError> {
    let shown = path.display().to_string();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ProviderError::Write { path: shown.clone(), source })?;
    }
    let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(ProviderError::Exists { path: shown }),
        Err(source) => return Err(ProviderError::Write { path: shown, source }),
    };
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|source| ProviderError::Write { path: shown, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_with_0600_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealed");
        create_new(&path, b"one").unwrap();
        assert!(matches!(create_new(&path, b"two"), Err(ProviderError::Exists { .. })));
        replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(dir.path().join("sealed.rotating"), "").unwrap();
        assert!(matches!(replace(&path, b"three"), Err(ProviderError::Busy { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
    }
}
