//! A local directory as storage: the file is copied to a temporary name beside its key,
//! flushed to disk, then renamed, so a reader never sees half an object.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{checksum_file, OpenUpload, Progress, Storage, StorageError, Stored, Upload};

/// Objects as files under one directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Storage under `root` (created when missing).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Where `key` is stored.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    async fn matches(path: &Path, upload: &Upload<'_>) -> std::io::Result<bool> {
        match tokio::fs::metadata(path).await {
            Ok(meta) if meta.len() == upload.size => {
                Ok(checksum_file(path).await?.0 == upload.checksum)
            }
            Ok(_) => Ok(false),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }
}

#[async_trait]
impl Storage for LocalStorage {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn put(
        &self,
        upload: &Upload<'_>,
        _progress: &mut dyn Progress,
    ) -> Result<Stored, StorageError> {
        let target = self.path_of(upload.key);
        let url = target.to_string_lossy().into_owned();
        // A retry after a crash between the rename and the database update finds it done.
        if Self::matches(&target, upload).await? {
            return Ok(Stored { url, bytes_sent: 0 });
        }
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let partial = target.with_extension(format!("{}.part", std::process::id()));
        let copied = async {
            tokio::fs::copy(upload.path, &partial).await?;
            tokio::fs::File::open(&partial).await?.sync_all().await?;
            tokio::fs::rename(&partial, &target).await
        }
        .await;
        if let Err(err) = copied {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err.into());
        }
        if !Self::matches(&target, upload).await? {
            return Err(StorageError::Mismatch(format!(
                "{} differs from the file sent",
                upload.key
            )));
        }
        Ok(Stored {
            url,
            bytes_sent: upload.size,
        })
    }

    async fn check(&self) -> Result<(), StorageError> {
        tokio::fs::create_dir_all(&self.root).await?;
        let probe = self.root.join(format!(".ready-{}", std::process::id()));
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }

    async fn abort(&self, _key: &str, _upload_id: &str) -> Result<(), StorageError> {
        Ok(())
    }

    async fn stale_uploads(
        &self,
        _max_age: Duration,
    ) -> Result<Option<Vec<OpenUpload>>, StorageError> {
        // A directory has no multipart uploads.
        Ok(Some(Vec::new()))
    }

    async fn put_picture(&self, key: &str, jpeg: Bytes) -> Result<String, StorageError> {
        let target = self.path_of(key);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let partial = target.with_extension(format!("{}.part", std::process::id()));
        let written = async {
            tokio::fs::write(&partial, &jpeg).await?;
            tokio::fs::rename(&partial, &target).await
        }
        .await;
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err.into());
        }
        Ok(target.to_string_lossy().into_owned())
    }
}
