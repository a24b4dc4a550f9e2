//! Secrets the service generates for itself on first start (the webhook token, the JWT
//! signing secret): kept in a file under the data directory, mode 0600, never logged.

use crate::domain::FileError;
use secrecy::SecretString;
use std::path::{Path, PathBuf};

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("{} holds no usable secret (under {min_len} characters)", path.display())]
    TooShort { path: PathBuf, min_len: usize },
}

/// The secret kept in `<data_dir>/<file>`, created with 32 random bytes (hex) when absent.
/// A file holding fewer than `min_len` characters is an error, not a reason to replace it.
pub fn load_or_create(
    data_dir: &Path,
    file: &str,
    min_len: usize,
) -> Result<SecretString, SecretError> {
    let path = data_dir.join(file);
    if path.exists() {
        let secret = std::fs::read_to_string(&path).map_err(FileError::at("reading", &path))?;
        let secret = secret.trim().to_string();
        if secret.len() < min_len {
            return Err(SecretError::TooShort { path, min_len });
        }
        tracing::info!(path = %path.display(), "secret read from file");
        return Ok(SecretString::from(secret));
    }
    std::fs::create_dir_all(data_dir).map_err(FileError::at("creating", data_dir))?;
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    match write_private(&path, &secret) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a secret");
            Ok(SecretString::from(secret))
        }
        // Another process (a `token issue` beside the service) created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create(data_dir, file, min_len)
        }
        Err(e) => Err(FileError::at("writing", &path)(e).into()),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{content}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_secret_is_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), "s", 16).unwrap();
        let again = load_or_create(dir.path(), "s", 16).unwrap();
        assert_eq!(first.expose_secret(), again.expose_secret());
        assert_eq!(first.expose_secret().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("s"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("short"), "abc\n").unwrap();
        assert!(load_or_create(dir.path(), "short", 16).is_err());
    }
}
