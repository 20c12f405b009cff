//! The node's private key, kept on the node: `<state dir>/wireguard.key` (state dir
//! `--state-dir`, default `/var/lib/causeway`, a host directory; the DaemonSet sets
//! `/var/lib/causeway/state/tunnel`), never in the API.
//!
//! Created on first start; read back on every start (so a restarted pod keeps its identity
//! and no peer has to change); replaced by a rotation. Only its public half leaves the node
//! (in the TunnelEndpoint) or appears in logs.
//!
//! The file is JSON, `{"privateKey":"<wg genkey text>","createdUnix":<seconds>}`, mode 0600 in
//! a directory made 0700 (kubelet creates a hostPath directory 0755). Every write is a
//! temporary file in the same directory, fsynced, then renamed over the key (a rotation) or
//! linked only where no key is (a first start: a concurrent start keeps the key that won), and
//! the directory fsynced: a reader sees the old key or the new one, never a part. A key file
//! that cannot be parsed is an error, never replaced: a new key is a new identity, which only
//! deleting the file (or `rotate`) asks for.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::wg::{PrivateKey, PublicKey};

/// Name of the key file in the state directory.
pub const KEY_FILE: &str = "wireguard.key";
/// Temporary files of a write are `.wireguard.key.<random>.tmp`.
const TEMP_PREFIX: &str = ".wireguard.key.";
const TEMP_SUFFIX: &str = ".tmp";
/// A temporary file this old is left over from a crash (a write takes milliseconds); a
/// younger one may be a concurrent `rotate`'s and is left alone.
const STALE_TEMP: Duration = Duration::from_secs(60);

/// Errors of reading or writing the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The state directory cannot be created or made private (0700).
    #[error("state directory {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The key file cannot be read or written.
    #[error("key file {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The key file holds no usable key. It is left as it is: delete it to start with a new
    /// key (a new identity for this node).
    #[error(
        "key file {}: {reason}; delete it to generate a new key (a new identity for this node)",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
}

/// A key as read from the key file.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub key: PrivateKey,
    /// When it was generated (Unix seconds), for `rotateInterval`.
    pub created_unix: u64,
}

/// What the key file holds.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyFile {
    private_key: String,
    created_unix: u64,
}

/// The key file of this node.
#[derive(Clone, Debug)]
pub struct KeyStore {
    dir: PathBuf,
    path: PathBuf,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl KeyStore {
    /// The key store in state directory `dir`, created (0700) if missing and made 0700 if it
    /// is more open.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, KeyStoreError> {
        let dir = dir.into();
        let private = || -> io::Result<()> {
            DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
            if fs::metadata(&dir)?.permissions().mode() & 0o777 != 0o700 {
                fs::set_permissions(&dir, Permissions::from_mode(0o700))?;
            }
            Ok(())
        };
        private().map_err(|source| KeyStoreError::Dir {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            path: dir.join(KEY_FILE),
            dir,
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, source: io::Error) -> KeyStoreError {
        KeyStoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The stored key, if the file exists.
    pub fn read(&self) -> Result<Option<StoredKey>, KeyStoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_err(e)),
        };
        let corrupt = |reason: String| KeyStoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let key = PrivateKey::from_base64(&file.private_key)
            .map_err(|e| corrupt(format!("privateKey: {e}")))?;
        Ok(Some(StoredKey {
            key,
            created_unix: file.created_unix,
        }))
    }

    /// The stored key, generating and storing one on first start. Returns whether it was
    /// created now. Removes temporary files a crashed write left behind.
    pub fn load_or_create(&self) -> Result<(StoredKey, bool), KeyStoreError> {
        self.remove_stale_temp_files();
        if let Some(k) = self.read()? {
            return Ok((k, false));
        }
        let stored = StoredKey {
            key: PrivateKey::generate(),
            created_unix: now_unix(),
        };
        match self.write(&stored, false) {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), public_key = %stored.key.public_key(), "generated the node's key");
                Ok((stored, true))
            }
            // Another start of ours won the race: use its key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let k = self
                    .read()?
                    .ok_or_else(|| self.io_err(io::ErrorKind::NotFound.into()))?;
                Ok((k, false))
            }
            Err(e) => Err(self.io_err(e)),
        }
    }

    /// Replaces the key by a fresh one (or stores a first one); returns the new public key.
    /// The running tunnel notices the change, reconfigures its device and republishes its
    /// TunnelEndpoint.
    pub fn rotate(&self) -> Result<PublicKey, KeyStoreError> {
        let stored = StoredKey {
            key: PrivateKey::generate(),
            created_unix: now_unix(),
        };
        self.write(&stored, true).map_err(|e| self.io_err(e))?;
        tracing::info!(path = %self.path.display(), public_key = %stored.key.public_key(), "rotated the node's key");
        Ok(stored.key.public_key())
    }

    /// Writes `stored` atomically: over the current key with `replace`, else only where there
    /// is none (`AlreadyExists` otherwise).
    fn write(&self, stored: &StoredKey, replace: bool) -> io::Result<()> {
        let text = serde_json::to_string(&KeyFile {
            private_key: stored.key.to_base64(),
            created_unix: stored.created_unix,
        })?;
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        if replace {
            tmp.persist(&self.path)?;
        } else {
            tmp.persist_noclobber(&self.path)?;
        }
        // The new name is durable once the directory is.
        File::open(&self.dir)?.sync_all()
    }

    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with(TEMP_PREFIX) || !name.ends_with(TEMP_SUFFIX) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= STALE_TEMP));
            if !stale {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a temporary key file left by an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a leftover temporary key file")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn temp_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != KEY_FILE)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn create_then_reload_gives_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = KeyStore::open(&state).unwrap();
        assert!(store.read().unwrap().is_none());
        let (created, fresh) = store.load_or_create().unwrap();
        assert!(fresh);
        let age = now_unix() - created.created_unix;
        assert!(age <= 1, "created now: {age} s ago");
        let (again, fresh) = KeyStore::open(&state).unwrap().load_or_create().unwrap();
        assert!(!fresh);
        assert_eq!(again.key.public_key(), created.key.public_key());
        assert_eq!(again.created_unix, created.created_unix);
        assert_eq!(store.path(), state.join("wireguard.key"));
        assert_eq!(temp_files(&state), Vec::<String>::new());
    }

    #[test]
    fn directory_is_0700_and_file_0600() {
        let dir = tempfile::tempdir().unwrap();
        // As kubelet creates a hostPath DirectoryOrCreate.
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, Permissions::from_mode(0o755)).unwrap();
        let store = KeyStore::open(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        store.load_or_create().unwrap();
        assert_eq!(mode(store.path()), 0o600);
        store.rotate().unwrap();
        assert_eq!(mode(store.path()), 0o600);
        // A missing directory is created 0700, parents included.
        let nested = dir.path().join("a/b");
        KeyStore::open(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
    }

    #[test]
    fn rotation_replaces_the_key_and_its_creation_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let old = StoredKey {
            key: PrivateKey::generate(),
            created_unix: 1_000,
        };
        store.write(&old, false).unwrap();
        let public = store.rotate().unwrap();
        let now = store.read().unwrap().unwrap();
        assert_eq!(now.key.public_key(), public);
        assert_ne!(public, old.key.public_key());
        assert!(
            now_unix() - now.created_unix <= 1,
            "{} is now",
            now.created_unix
        );
        let (loaded, fresh) = store.load_or_create().unwrap();
        assert!(!fresh);
        assert_eq!(loaded.key.public_key(), public);
    }

    #[test]
    fn a_concurrent_first_start_keeps_the_key_that_won() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let first = StoredKey {
            key: PrivateKey::generate(),
            created_unix: 1_000,
        };
        store.write(&first, false).unwrap();
        let second = StoredKey {
            key: PrivateKey::generate(),
            created_unix: 2_000,
        };
        let err = store.write(&second, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let kept = store.read().unwrap().unwrap();
        assert_eq!(kept.key.public_key(), first.key.public_key());
        assert_eq!(temp_files(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let bad_key = r#"{"privateKey":"not a key","createdUnix":1}"#;
        for text in ["", "{\"privateKey\": \"", bad_key, "\u{0}\u{1}\u{2}"] {
            fs::write(store.path(), text).unwrap();
            for err in [
                store.read().unwrap_err(),
                store.load_or_create().unwrap_err(),
            ] {
                assert!(matches!(err, KeyStoreError::Corrupt { .. }), "{err:?}");
                let shown = err.to_string();
                assert!(
                    shown.starts_with(&format!("key file {}: ", store.path().display())),
                    "{shown}"
                );
                assert!(shown.contains("delete it"), "{shown}");
            }
            assert_eq!(fs::read_to_string(store.path()).unwrap(), text, "untouched");
        }
        fs::write(store.path(), bad_key).unwrap();
        let shown = store.read().unwrap_err().to_string();
        assert!(shown.contains(": privateKey: "), "{shown}");
        // Unreadable (here: a directory where the file should be) names the file too.
        fs::remove_file(store.path()).unwrap();
        fs::create_dir(store.path()).unwrap();
        let err = store.load_or_create().unwrap_err();
        assert!(matches!(err, KeyStoreError::Io { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("key file {}", store.path().display())
        );
    }

    #[test]
    fn leftover_temp_files_are_ignored_and_stale_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let (key, _) = store.load_or_create().unwrap();
        let stale = dir.path().join(".wireguard.key.crashed.tmp");
        let young = dir.path().join(".wireguard.key.writing.tmp");
        let other = dir.path().join("notes.tmp");
        for p in [&stale, &young, &other] {
            fs::write(p, "{\"privateKey\": \"").unwrap();
        }
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let (again, fresh) = store.load_or_create().unwrap();
        assert!(!fresh);
        assert_eq!(again.key.public_key(), key.key.public_key());
        assert_eq!(
            temp_files(dir.path()),
            [".wireguard.key.writing.tmp", "notes.tmp"],
            "the stale one removed, a young one (a concurrent write's) and others kept"
        );
    }

    #[test]
    fn the_private_key_is_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let (stored, _) = store.load_or_create().unwrap();
        assert!(!format!("{stored:?}").contains(&stored.key.to_base64()));
    }
}
