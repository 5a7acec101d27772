//! Files that hold secrets (the SQLite database's password hashes, the
//! server's signing key): created owner-only whatever the umask, and
//! warned about when someone made them wider.

use std::path::Path;

/// Creates `dir` and its missing parents, owner-only (0700) whatever the
/// umask; an existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty `path` readable and writable by its owner only (0600),
/// unless it exists.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Warns when group or others may read `path`, which holds `what`; it is
/// left as the operator made it. Nothing is said of a missing path.
pub fn warn_if_shared(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "readable by other users, and it holds {what}: `chmod {}` it",
                    if metadata.is_dir() { "700" } else { "600" }
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}
