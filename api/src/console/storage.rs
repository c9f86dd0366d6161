//! Download links for stored recordings: a presigned `GET` on S3, or, for a local directory
//! store, a link to the API's own `GET /api/v1/recordings/{id}/download` signed with a key
//! derived from the first JWT key (HMAC-SHA256 over the job id and the expiry), so that a
//! link works in a plain `<a href>` for its lifetime and for that recording only.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use livegate_recorder::config::StorageKind;
use livegate_recorder::storage::s3::S3Storage;
use livegate_recorder::storage::{Storage as _, StorageError};
use sha2::Sha256;

use super::config::RecordingsConfig;

type HmacSha256 = Hmac<Sha256>;

/// The recorder's storage, as far as the API reads it.
#[derive(Debug)]
pub struct RecordingStore {
    place: Place,
    ttl: Duration,
}

/// How a browser gets a stored picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picture {
    /// Redirected to this presigned link.
    Signed(String),
    /// Sent this file.
    File(PathBuf),
}

#[derive(Debug)]
enum Place {
    S3(S3Storage),
    Local { root: PathBuf, key: Vec<u8> },
}

impl RecordingStore {
    /// The storage `config` names; `link_key` signs local links.
    pub fn new(config: &RecordingsConfig, link_key: &[u8]) -> Self {
        let place = match (config.kind, &config.s3) {
            (StorageKind::S3, Some(s3)) => Place::S3(S3Storage::new(s3)),
            _ => {
                // A key of its own, so that a link is never a token for anything else.
                let mut mac = mac(link_key);
                mac.update(b"livegate recording download links");
                Place::Local {
                    root: config.local.dir.clone(),
                    key: mac.finalize().into_bytes().to_vec(),
                }
            }
        };
        Self {
            place,
            ttl: Duration::from_secs(config.download_ttl_s),
        }
    }

    /// `s3` or `local`.
    pub fn kind(&self) -> &'static str {
        match self.place {
            Place::S3(_) => "s3",
            Place::Local { .. } => "local",
        }
    }

    /// A link to recording `job_id`, stored under `object_key`, valid from `now_s` for the
    /// configured lifetime. `None` when it cannot be made (logged).
    pub async fn download_url(&self, job_id: i64, object_key: &str, now_s: u64) -> Option<String> {
        match &self.place {
            Place::S3(s3) => match s3.presign_get(object_key, self.ttl).await {
                Ok(url) => Some(url),
                Err(err) => {
                    tracing::warn!(job.id = job_id, error = %err, "cannot presign a recording download");
                    None
                }
            },
            Place::Local { key, .. } => {
                let expires = now_s.saturating_add(self.ttl.as_secs());
                let signature = hex::encode(sign(key, job_id, expires).finalize().into_bytes());
                Some(format!(
                    "/api/v1/recordings/{job_id}/download?expires={expires}&sig={signature}"
                ))
            }
        }
    }

    /// Whether a local link's `signature` (hex) is ours for `job_id` and `expires`, and
    /// `expires` is not past `now_s`. Compared in constant time.
    pub fn verify_link(&self, job_id: i64, expires: u64, signature: &str, now_s: u64) -> bool {
        let Place::Local { key, .. } = &self.place else {
            return false;
        };
        let Ok(raw) = hex::decode(signature) else {
            return false;
        };
        expires >= now_s && sign(key, job_id, expires).verify_slice(&raw).is_ok()
    }

    /// Where the local store keeps `object_key`; `None` on S3, or for a key that would leave
    /// the directory.
    pub fn local_path(&self, object_key: &str) -> Option<PathBuf> {
        let Place::Local { root, .. } = &self.place else {
            return None;
        };
        let relative = Path::new(object_key);
        let plain = relative
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
        (plain && !object_key.is_empty()).then(|| root.join(relative))
    }

    /// Whether this store can show a browser the picture the recorder recorded at `stored`:
    /// an `s3://` one on S3, a path on a local store (which [`picture`](Self::picture) then
    /// confines to its directory).
    pub fn shows(&self, stored: &str) -> bool {
        match self.place {
            Place::S3(_) => stored.starts_with("s3://"),
            Place::Local { .. } => !stored.starts_with("s3://"),
        }
    }

    /// How a browser gets the picture (a poster or a snapshot) the recorder recorded at
    /// `stored`, as of `now`; `None` when this store does not hold it or a link cannot be made
    /// (logged).
    pub async fn picture(&self, stored: &str, now: SystemTime) -> Option<Picture> {
        match &self.place {
            Place::S3(s3) => self
                .signed_picture(s3, stored, now)
                .await
                .map(Picture::Signed),
            Place::Local { root, .. } => local_picture(root, stored).await.map(Picture::File),
        }
    }

    /// A presigned link to a picture S3 keeps at `stored` (`s3://bucket/key`, of this store's
    /// bucket only), valid for at least half the configured lifetime from `now`. Links are
    /// signed as of the start of a window of half the lifetime, so that one picture has one
    /// URL for that long and browsers keep it cached.
    async fn signed_picture(
        &self,
        s3: &S3Storage,
        stored: &str,
        now: SystemTime,
    ) -> Option<String> {
        let (bucket, key) = stored.strip_prefix("s3://")?.split_once('/')?;
        if bucket != s3.bucket() || key.is_empty() {
            return None;
        }
        let window = (self.ttl.as_secs() / 2).max(1);
        let since_epoch = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let start = UNIX_EPOCH + Duration::from_secs(since_epoch - since_epoch % window);
        match s3.presign_get_from(key, start, self.ttl).await {
            Ok(url) => Some(url),
            Err(err) => {
                tracing::warn!(error = %err, "cannot presign a picture link");
                None
            }
        }
    }

    /// Whether the storage answers: S3's bucket, or the directory being there.
    pub async fn check(&self) -> Result<(), StorageError> {
        match &self.place {
            Place::S3(s3) => s3.check().await,
            Place::Local { root, .. } => match tokio::fs::metadata(root).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(StorageError::Unavailable(format!(
                    "{} is not a directory (recordings.local.dir)",
                    root.display()
                ))),
                Err(err) => Err(StorageError::Unavailable(format!(
                    "{}: {err} (recordings.local.dir)",
                    root.display()
                ))),
            },
        }
    }
}

/// A JPEG the local store under `root` keeps at `stored` (the path the recorder recorded):
/// `None` for anything else, or for a path outside the directory. Both are resolved first, so
/// that a relative directory or a link cannot lead outside it.
async fn local_picture(root: &Path, stored: &str) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let file = tokio::fs::canonicalize(stored).await.ok()?;
    let jpeg = file
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("jpg"));
    (jpeg && file.starts_with(&root)).then_some(file)
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

fn sign(key: &[u8], job_id: i64, expires: u64) -> HmacSha256 {
    let mut mac = mac(key);
    mac.update(format!("{job_id}:{expires}").as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> RecordingStore {
        let config = RecordingsConfig {
            local: livegate_recorder::config::LocalStorageConfig {
                dir: PathBuf::from("/srv/rec"),
            },
            ..RecordingsConfig::default()
        };
        RecordingStore::new(&config, b"a jwt key of thirty-two bytes or more")
    }

    #[tokio::test]
    async fn local_links_are_signed_per_recording_and_expire() {
        let store = local();
        let url = store
            .download_url(7, "42/1-a.mp4", 1000)
            .await
            .unwrap_or_default();
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let field = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_owned()
        };
        let (expires, sig) = (field("expires").parse().unwrap_or(0), field("sig"));
        assert_eq!(expires, 4600);
        assert!(store.verify_link(7, expires, &sig, 1000));
        assert!(
            !store.verify_link(8, expires, &sig, 1000),
            "another recording"
        );
        assert!(
            !store.verify_link(7, expires + 1, &sig, 1000),
            "another expiry"
        );
        assert!(!store.verify_link(7, expires, &sig, expires + 1), "expired");
        assert!(!store.verify_link(7, expires, "zz", 1000));
    }

    #[tokio::test]
    async fn s3_links_are_presigned_gets_of_the_object() {
        let config = RecordingsConfig {
            kind: StorageKind::S3,
            s3: Some(livegate_recorder::config::S3Config {
                endpoint: "http://127.0.0.1:9000".to_owned(),
                region: "us-east-1".to_owned(),
                bucket: "recordings".to_owned(),
                access_key: livegate_core::Secret::new("AKIDEXAMPLE"),
                secret_key: livegate_core::Secret::new("secret-key-example"),
                path_style: true,
                checksum: livegate_recorder::config::ChecksumWhen::WhenSupported,
                part_checksum: livegate_recorder::config::PartChecksum::Crc32c,
                part_size_bytes: 16 * 1024 * 1024,
                parts_in_flight: 2,
                orphan_upload_max_age_s: 86_400,
                key_prefix: "recordings/".to_owned(),
                request_timeout_ms: 1000,
            }),
            download_ttl_s: 600,
            ..RecordingsConfig::default()
        };
        let store = RecordingStore::new(&config, b"unused for s3");
        assert_eq!(store.kind(), "s3");
        let url = store
            .download_url(7, "recordings/42/1-a.mp4", 1000)
            .await
            .unwrap_or_default();
        assert!(
            url.starts_with("http://127.0.0.1:9000/recordings/recordings/42/1-a.mp4?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=600"), "{url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert_eq!(store.local_path("recordings/42/1-a.mp4"), None);
        assert!(!store.verify_link(7, 2000, "00", 1000));
    }

    #[test]
    fn keys_stay_inside_the_directory() {
        let store = local();
        assert_eq!(
            store.local_path("42/1-a.mp4"),
            Some(PathBuf::from("/srv/rec/42/1-a.mp4"))
        );
        assert_eq!(store.local_path("../etc/passwd"), None);
        assert_eq!(store.local_path("/etc/passwd"), None);
        assert_eq!(store.local_path(""), None);
    }
}
