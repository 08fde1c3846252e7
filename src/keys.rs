//! Key files: Ed25519 private keys as PKCS#8 PEM, created with mode 0600.
//!
//! PKCS#8 PEM is what OpenSSL and most libraries read, so a resident's or the desk's
//! key can be inspected and used with ordinary tools (`openssl pkey -in alice.key
//! -pubout`). A key file is never overwritten, and its secret never logged.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

/// Key files are readable and writable by their owner only.
pub const KEY_FILE_MODE: u32 = 0o600;
/// Key folders are usable by their owner only.
pub const KEY_DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not read the key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("could not write the key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM form (as `covoit keygen` writes)")]
    Format { path: PathBuf },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// A new key from the operating system's random number generator.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| KeyError::Random(error.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a new key file with mode 0600; refuses to replace an existing file.
pub fn write_new(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let write_error = |source| KeyError::Write { path: path.to_owned(), source };
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|_| KeyError::Format { path: path.to_owned() })?;
    if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        create_private_dir(folder).map_err(write_error)?;
    }
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(KEY_FILE_MODE).open(path).map_err(write_error)?;
    file.write_all(pem.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(())
}

/// Reads a key file; warns when others may read it.
pub fn read(path: &Path) -> Result<SigningKey, KeyError> {
    let read_error = |source| KeyError::Read { path: path.to_owned(), source };
    let metadata = fs::metadata(path).map_err(read_error)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the key file can be read by other users; run chmod 600 on it");
    }
    let pem = fs::read_to_string(path).map_err(read_error)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Format { path: path.to_owned() })
}

/// Reads the key at `path`, or creates it; says whether it was created.
pub fn read_or_create(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    if path.exists() {
        return Ok((read(path)?, false));
    }
    let key = generate()?;
    write_new(path, &key)?;
    Ok((key, true))
}

/// Creates a folder (and its parents) for keys, usable by its owner only.
fn create_private_dir(folder: &Path) -> std::io::Result<()> {
    if folder.exists() {
        return Ok(());
    }
    fs::create_dir_all(folder)?;
    fs::set_permissions(folder, fs::Permissions::from_mode(KEY_DIR_MODE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_mode_0600_and_are_never_overwritten() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("keys/alice.key");
        let (key, created) = read_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, KEY_FILE_MODE);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, KEY_DIR_MODE);
        let (again, created) = read_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.to_bytes(), key.to_bytes());
        assert!(matches!(write_new(&path, &generate().unwrap()), Err(KeyError::Write { .. })));
        assert!(fs::read_to_string(&path).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        fs::write(folder.path().join("junk.key"), "not a key").unwrap();
        assert!(matches!(read(&folder.path().join("junk.key")), Err(KeyError::Format { .. })));
    }
}
