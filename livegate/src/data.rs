//! The data directory of `livegate up`: the SQLite database, the recordings, and the secrets
//! made on first start (so tokens minted before a restart still play after it).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the data directory is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Creating or reading it failed.
    #[error("{path}: {source}")]
    Io {
        /// What was being read or written.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The secrets file is not what this binary writes.
    #[error("{path}: {message} (delete it to start over with new keys)")]
    Secrets {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The system's random source failed.
    #[error("no random bytes for new keys: {0}")]
    Random(String),
}

/// The secrets of one installation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Secrets {
    /// The play-token key shared by the API, the proxy and the hooks service.
    pub token_key: String,
    /// The key the API signs its access tokens with.
    pub jwt_key: String,
    /// The secret payment callbacks are signed with (`Livegate-Signature`): give it to the
    /// payment provider, or sign test callbacks with it.
    pub payment_secret: String,
}

/// The file as this or an older binary wrote it (older ones wrote fewer keys).
#[derive(Debug, Deserialize)]
struct StoredSecrets {
    token_key: String,
    jwt_key: Option<String>,
    payment_secret: Option<String>,
}

/// A data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates `root` (and its parts) if missing, `root` for this user only: it holds the
    /// secrets and the database (stream keys, password hashes). A database an older binary
    /// left readable by others is made private too.
    pub fn open(root: &Path) -> Result<DataDir, DataError> {
        let mut private = fs::DirBuilder::new();
        private.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            private.mode(0o700);
        }
        // An existing directory keeps its mode: `--data-dir` may name one the user made.
        private.create(root).map_err(|source| DataError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        for dir in [root.join("recordings"), root.join("run")] {
            fs::create_dir_all(&dir).map_err(|source| DataError::Io { path: dir, source })?;
        }
        let root = fs::canonicalize(root).map_err(|source| DataError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let data = DataDir { root };
        data.restrict_database()?;
        Ok(data)
    }

    /// Makes the database files that exist readable and writable by this user only (SQLite
    /// creates new ones private: see `livegate_core::db`).
    fn restrict_database(&self) -> Result<(), DataError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let database = self.database().into_os_string();
            for suffix in ["", "-wal", "-shm"] {
                let mut path = database.clone();
                path.push(suffix);
                let path = PathBuf::from(path);
                let io = |source| DataError::Io {
                    path: path.clone(),
                    source,
                };
                let mode = match fs::metadata(&path) {
                    Ok(meta) => meta.permissions().mode(),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(io(err)),
                };
                if mode & 0o077 != 0 {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700))
                        .map_err(io)?;
                }
            }
        }
        Ok(())
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.root.join("livegate.db")
    }

    /// Where the origin's recordings are looked for.
    pub fn recordings(&self) -> PathBuf {
        self.root.join("recordings")
    }

    /// Runtime files (PID file, upgrade socket).
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The secrets file.
    pub fn secrets_file(&self) -> PathBuf {
        self.root.join("secrets.toml")
    }

    /// The installation's secrets, made (readable by this user only) on first start. Returns
    /// whether they were made now.
    pub fn secrets(&self) -> Result<(Secrets, bool), DataError> {
        let path = self.secrets_file();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let stored: StoredSecrets =
                    toml::from_str(&text).map_err(|err| DataError::Secrets {
                        path: path.clone(),
                        message: err.message().to_owned(),
                    })?;
                let complete = stored.jwt_key.is_some() && stored.payment_secret.is_some();
                // Keep what is there (minted tokens still play, sessions stay valid); add
                // what an older binary did not make.
                let secrets = Secrets {
                    token_key: stored.token_key,
                    jwt_key: stored.jwt_key.map_or_else(|| random_hex(32), Ok)?,
                    payment_secret: stored.payment_secret.map_or_else(|| random_hex(32), Ok)?,
                };
                if !complete {
                    let fresh = path.with_extension("toml.new");
                    let _ = fs::remove_file(&fresh);
                    write_private(&fresh, &toml_text(&secrets))?;
                    fs::rename(&fresh, &path).map_err(|source| DataError::Io {
                        path: path.clone(),
                        source,
                    })?;
                }
                Ok((secrets, false))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let secrets = Secrets {
                    token_key: random_hex(32)?,
                    jwt_key: random_hex(32)?,
                    payment_secret: random_hex(32)?,
                };
                write_private(&path, &toml_text(&secrets))?;
                Ok((secrets, true))
            }
            Err(source) => Err(DataError::Io { path, source }),
        }
    }
}

fn toml_text(secrets: &Secrets) -> String {
    format!(
        "# Made by `livegate up` on first start. Keep it private; deleting it makes new keys\n\
         # (tokens minted before then stop playing, sessions end, the payment provider needs\n\
         # the new payment_secret).\ntoken_key = \"{}\"\njwt_key = \"{}\"\npayment_secret = \"{}\"\n",
        secrets.token_key, secrets.jwt_key, secrets.payment_secret
    )
}

/// `len` random bytes as hex.
pub fn random_hex(len: usize) -> Result<String, DataError> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|err| DataError::Random(err.to_string()))?;
    Ok(hex::encode(bytes))
}

fn write_private(path: &Path, text: &str) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(&dir.path().join("data")).unwrap();
        let (first, made) = data.secrets().unwrap();
        assert!(made);
        assert_eq!(first.token_key.len(), 64);
        let (again, made) = data.secrets().unwrap();
        assert!(!made);
        assert_eq!(again.token_key, first.token_key);
        assert_eq!(again.jwt_key, first.jwt_key);
        assert_eq!(again.payment_secret, first.payment_secret);
        // A file an older binary wrote keeps what it has and gains what it lacks, once.
        let path = data.secrets_file();
        fs::write(&path, format!("token_key = \"{}\"\n", first.token_key)).unwrap();
        let (upgraded, made) = data.secrets().unwrap();
        assert!(!made);
        assert_eq!(upgraded.token_key, first.token_key);
        assert_eq!(upgraded.jwt_key.len(), 64);
        assert_eq!(upgraded.payment_secret.len(), 64);
        let (kept, _) = data.secrets().unwrap();
        assert_eq!(kept.jwt_key, upgraded.jwt_key);
        assert_eq!(kept.payment_secret, upgraded.payment_secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(data.root().join("secrets.toml"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_and_the_database_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let data = DataDir::open(&root).unwrap();
        assert_eq!(mode(data.root()), 0o700);

        // Files an older binary left readable by everyone are made private on the next start.
        let database = data.database();
        let wal = data.root().join("livegate.db-wal");
        for path in [&database, &wal] {
            fs::write(path, b"").unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        let data = DataDir::open(&root).unwrap();
        assert_eq!(mode(&data.database()), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert!(!data.root().join("livegate.db-shm").exists());
    }
}
