//! Where MP4s end up: a [`Storage`] stores one file under one key, resumably, and confirms
//! what it stored. Two implementations: [`local::LocalStorage`] (a directory, the embedded
//! default) and [`s3::S3Storage`] (any S3-compatible endpoint).

pub mod digest;
pub mod local;
pub mod s3;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::PicturesConfig;

/// Why a storage operation failed. All of them may pass (storage back up, credentials
/// fixed), so the job waits and retries; nothing local is deleted meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage could not be reached or answered with an error.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The storage refused the credentials or the request.
    #[error("storage refused the request: {0}")]
    Refused(String),
    /// What was stored is not what was sent.
    #[error("stored object does not match: {0}")]
    Mismatch(String),
    /// A local file could not be read or written.
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
    /// The caller could not record the progress (it lost the job, or the database is down).
    #[error("cannot record upload progress: {0}")]
    Progress(String),
}

/// One file to store.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    /// The MP4.
    pub path: &'a Path,
    /// Its key (relative, `/`-separated).
    pub key: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// Its identity ([`digest::FileDigests::checksum`]).
    pub checksum: &'a str,
    /// The multipart part size.
    pub part_size: u64,
    /// A multipart upload begun by an earlier attempt, to resume.
    pub upload_id: Option<&'a str>,
    /// The checksum (base64, of the storage's part checksum algorithm) of each `part_size`
    /// part, when the pass that checksummed the file took them; else each part's is taken
    /// just before it is sent.
    pub part_checksums: Option<&'a [String]>,
}

/// Where a stored file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `s3://bucket/key`, or the local path.
    pub url: String,
    /// Bytes actually sent by this attempt (less than the size after a resume).
    pub bytes_sent: u64,
}

/// Told about an upload's progress, so that a crash can resume it. An error stops the upload
/// where it is (resumable).
#[async_trait]
pub trait Progress: Send {
    /// A multipart upload began (or an earlier one was found gone: `None`).
    async fn upload_started(&mut self, upload_id: Option<&str>) -> Result<(), String>;
    /// `parts` parts are now stored.
    async fn parts_stored(&mut self, upload_id: &str, parts: i32) -> Result<(), String>;
}

/// A multipart upload the storage holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The key it is for.
    pub key: String,
    /// Its id.
    pub upload_id: String,
}

/// A place to store recordings.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// `local` or `s3`.
    fn kind(&self) -> &'static str;

    /// Stores `upload` (resuming its multipart upload when it names one), then confirms the
    /// stored size and checksum.
    async fn put(
        &self,
        upload: &Upload<'_>,
        progress: &mut dyn Progress,
    ) -> Result<Stored, StorageError>;

    /// Whether the storage is usable with the configured credentials (for `/readyz`).
    async fn check(&self) -> Result<(), StorageError>;

    /// Aborts a multipart upload that will not be completed. Gone already is fine.
    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StorageError>;

    /// The multipart uploads under the storage's prefix begun longer than `max_age` ago;
    /// `None` when the storage cannot list its uploads (some S3 servers cannot).
    async fn stale_uploads(
        &self,
        max_age: Duration,
    ) -> Result<Option<Vec<OpenUpload>>, StorageError>;

    /// Stores a small JPEG (a poster or a snapshot) under `key` in one request, replacing
    /// what is there; a reader sees the old picture or the new one, never half of one.
    /// Returns its URL (`s3://bucket/key` or the local path).
    async fn put_picture(&self, key: &str, jpeg: Bytes) -> Result<String, StorageError>;
}

/// What the room's cover records for picture `key`, stored at `stored_url` (`s3://bucket/key`
/// or the local path) at `stored_at_ms`: the picture under the configured public base URL
/// (with the time as a version, so that caches see a replaced snapshot as new), else where it
/// is stored, which the room API turns into a link of its own when it is asked (a presigned
/// link kept here would stop working).
pub fn picture_link(
    config: &PicturesConfig,
    key: &str,
    stored_url: &str,
    stored_at_ms: i64,
) -> String {
    match &config.public_base_url {
        Some(base) => format!("{}/{key}?v={stored_at_ms}", base.trim_end_matches('/')),
        None => stored_url.to_owned(),
    }
}

/// The key of a recording's poster: its object key with `.jpg` for `.mp4`.
pub fn poster_key(object_key: &str) -> String {
    let stem = object_key.strip_suffix(".mp4").unwrap_or(object_key);
    format!("{stem}.jpg")
}

/// The identity ([`digest::FileDigests::checksum`]) and size of a file, read in bounded
/// chunks.
pub async fn checksum_file(path: &Path) -> std::io::Result<(String, u64)> {
    let digests = digest::digest_file(path, None).await?;
    Ok((digests.checksum, digests.size))
}

/// The object key of a recording: room, start time and the source's file name, so that every
/// retry of one recording writes the same key and two recordings never share one.
pub fn object_key(prefix: &str, room_id: i64, started_at_ms: i64, source: &Path) -> String {
    // `.09-31-08-0.mp4` and `42.1733045523000.flv.tmp` (files recovered from an origin
    // that died) are keyed like the recordings they were to become.
    let name = source
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.trim_start_matches('.');
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    let stem = Path::new(name)
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{room_id}/{started_at_ms}-{stem}.mp4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poster_sits_beside_its_recording() {
        assert_eq!(
            poster_key("recordings/42/1700000000000-42-17.mp4"),
            "recordings/42/1700000000000-42-17.jpg"
        );
    }

    #[test]
    fn object_keys_are_stable_and_safe() {
        let key = object_key(
            "recordings/",
            42,
            1_700_000_000_000,
            Path::new("/rec/42-17 x+y.flv"),
        );
        assert_eq!(key, "recordings/42/1700000000000-42-17_x_y.mp4");
        assert_eq!(
            key,
            object_key(
                "recordings/",
                42,
                1_700_000_000_000,
                Path::new("/other/42-17 x+y.ts")
            )
        );
    }
}
