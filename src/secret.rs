//! The JWT signing key: configured, or generated once and kept in the data
//! directory with owner-only permissions.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chat_api::auth::{JwtSecret, JwtSecretError};
use chat_persistence::files;

/// Each message names what is at fault; its cause is the `source` (print
/// the chain, as `main` does).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("CHAT_JWT_SECRET is unusable")]
    Configured(#[source] JwtSecretError),
    #[error("the secret in {path} is unusable")]
    Stored {
        path: PathBuf,
        #[source]
        source: JwtSecretError,
    },
    #[error("cannot read or write the secret file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no randomness available to generate a secret")]
    Random(#[source] getrandom::Error),
}

const FILE_NAME: &str = "jwt-secret";

/// What `load_or_create` would do, without creating anything: `Err` when
/// it would refuse, else a sentence saying which secret is in force.
pub fn check(configured: Option<&str>, data_dir: &Path) -> Result<String, SecretError> {
    if let Some(configured) = configured {
        JwtSecret::new(configured.as_bytes()).map_err(SecretError::Configured)?;
        return Ok("JWT secret: CHAT_JWT_SECRET (redacted)".to_owned());
    }
    let path = data_dir.join(FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(stored) => {
            JwtSecret::new(stored.trim().as_bytes()).map_err(|source| SecretError::Stored {
                path: path.clone(),
                source,
            })?;
            Ok(format!("JWT secret: stored in {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(format!(
            "JWT secret: none yet; the server generates one into {} at its first start",
            path.display()
        )),
        Err(source) => Err(SecretError::Io { path, source }),
    }
}

/// The configured secret if there is one; else the stored one; else a new
/// random one, stored for next time.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<JwtSecret, SecretError> {
    if let Some(configured) = configured {
        return JwtSecret::new(configured.as_bytes()).map_err(SecretError::Configured);
    }
    let path = data_dir.join(FILE_NAME);
    let io = |source| SecretError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(stored) => {
            // Anyone who can read the key can be anyone.
            files::warn_if_shared(&path, "the key that signs every token");
            JwtSecret::new(stored.trim().as_bytes()).map_err(|source| SecretError::Stored {
                path: path.clone(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            files::create_private_dir(data_dir).map_err(io)?;
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).map_err(SecretError::Random)?;
            let encoded: String = random.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&path, encoded.as_bytes()).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            JwtSecret::new(encoded.into_bytes()).map_err(SecretError::Configured)
        }
        Err(e) => Err(io(e)),
    }
}

/// Creates `path` readable and writable by its owner only; never
/// overwrites an existing file.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path()).unwrap();
        let second = load_or_create(None, dir.path()).unwrap();
        let stored = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(stored.len(), 64);
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_configured_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_or_create(Some("too short"), dir.path()),
            Err(SecretError::Configured(_))
        ));
        assert!(load_or_create(Some("a configured secret of 32 bytes!"), dir.path()).is_ok());
    }

    #[test]
    fn a_placeholder_secret_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let error = load_or_create(Some(&"x".repeat(40)), dir.path()).unwrap_err();
        assert!(matches!(
            error,
            SecretError::Configured(JwtSecretError::Guessable)
        ));
        let told = chat_api::error::error_chain(&error);
        assert!(told.contains("openssl rand"), "{told}");
    }

    #[test]
    fn a_truncated_stored_secret_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "short").unwrap();
        assert!(matches!(
            load_or_create(None, dir.path()),
            Err(SecretError::Stored { .. })
        ));
        assert_eq!(
            fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "short"
        );
    }
}
