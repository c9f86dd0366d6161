//! The multipart half of [`S3Storage`]: which parts an upload already holds, sending the
//! missing ones one at a time from disk, and completing it.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{code_of, describe, status_of, S3Storage, SHA256_META};
use crate::storage::{Progress, Storage as _, StorageError, Upload};

/// A part as the storage reports it.
#[derive(Debug, Clone)]
struct ListedPart {
    size: u64,
    e_tag: Option<String>,
    sha256: Option<String>,
}

/// Whether the server answered with a client error that a retry of the same request cannot
/// change (not a timeout or throttling).
fn refused_for_good<E>(err: &aws_sdk_s3::error::SdkError<E, super::HttpResponse>) -> bool {
    status_of(err)
        .is_some_and(|status| (400..500).contains(&status) && status != 408 && status != 429)
}

/// Reads bytes `offset .. offset + len` of `path`.
async fn read_part(path: &Path, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut buffer = vec![0u8; len];
    file.read_exact(&mut buffer).await?;
    Ok(Bytes::from(buffer))
}

fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

fn md5_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(bytes)))
}

impl S3Storage {
    /// The parts of `upload_id` already stored; `None` when the upload is gone.
    async fn listed_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<BTreeMap<i32, ListedPart>>, StorageError> {
        let mut parts = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let listed = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let listed = match listed {
                Ok(listed) => listed,
                Err(err)
                    if code_of(&err) == Some("NoSuchUpload") || status_of(&err) == Some(404) =>
                {
                    return Ok(None)
                }
                Err(err) => return Err(describe("ListParts", &err)),
            };
            for part in listed.parts() {
                if let (Some(number), Some(size)) = (part.part_number(), part.size()) {
                    parts.insert(
                        number,
                        ListedPart {
                            size: u64::try_from(size).unwrap_or(0),
                            e_tag: part.e_tag().map(str::to_owned),
                            sha256: part.checksum_sha256().map(str::to_owned),
                        },
                    );
                }
            }
            match (listed.is_truncated(), listed.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(Some(parts))
    }

    /// Aborts the multipart uploads of `key` the storage holds: before a fresh upload of a
    /// key, they can only be this recording's, left by an attempt that died between creating
    /// one and saving its id (no other record of them exists). A server that cannot list
    /// uploads leaves them to its lifecycle rules.
    async fn abort_unrecorded(&self, key: &str) -> Result<(), StorageError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(err) if code_of(&err) == Some("NotImplemented") || status_of(&err) == Some(501) => {
                return Ok(())
            }
            Err(err) => return Err(describe("ListMultipartUploads", &err)),
        };
        for found in listed.uploads() {
            if let (Some(found_key), Some(upload_id)) = (found.key(), found.upload_id()) {
                if found_key == key {
                    tracing::info!(
                        key,
                        "aborting a multipart upload an earlier attempt left unrecorded"
                    );
                    self.abort(key, upload_id).await?;
                }
            }
        }
        Ok(())
    }

    async fn create_upload(&self, upload: &Upload<'_>) -> Result<String, StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(upload.key)
            .content_type("video/mp4")
            .metadata(SHA256_META, upload.sha256)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|err| describe("CreateMultipartUpload", &err))?;
        created.upload_id().map(str::to_owned).ok_or_else(|| {
            StorageError::Unavailable("CreateMultipartUpload: no upload id".to_owned())
        })
    }

    /// Aborts a resumed upload the server refuses to go on with, so that a fresh one starts.
    async fn give_up_broken<E>(
        &self,
        upload: &Upload<'_>,
        upload_id: &str,
        what: &str,
        err: &aws_sdk_s3::error::SdkError<E, super::HttpResponse>,
    ) where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        tracing::warn!(
            key = upload.key,
            error = %describe(what, err),
            "the resumed upload is refused, starting a new one"
        );
        let _ = self.abort(upload.key, upload_id).await;
    }

    /// Sends the parts `listed` lacks and completes the upload. `Ok(None)`: the upload is gone
    /// (or, `resumed`, refused for good: a completion cut off half way).
    async fn put_parts(
        &self,
        upload: &Upload<'_>,
        upload_id: &str,
        listed: &BTreeMap<i32, ListedPart>,
        resumed: bool,
        progress: &mut dyn Progress,
    ) -> Result<Option<u64>, StorageError> {
        let count = upload.size.div_ceil(upload.part_size).max(1);
        let mut completed = Vec::new();
        let mut sent = 0u64;
        let mut stored = listed.len();
        for index in 0..count {
            let number = i32::try_from(index + 1)
                .map_err(|_| StorageError::Mismatch("too many parts".to_owned()))?;
            let offset = index * upload.part_size;
            let len = upload.part_size.min(upload.size - offset);
            let have = listed.get(&number).filter(|part| part.size == len);
            let (e_tag, sha256) = match have {
                Some(ListedPart {
                    e_tag: Some(e_tag),
                    sha256: Some(sha256),
                    ..
                }) => (e_tag.clone(), sha256.clone()),
                Some(_) => {
                    // Stored, but the listing lacks what completion needs: recompute it
                    // from the same bytes instead of sending them again.
                    let bytes = read_part(upload.path, offset, len).await?;
                    let e_tag = have
                        .and_then(|part| part.e_tag.clone())
                        .unwrap_or_else(|| md5_etag(&bytes));
                    (e_tag, sha256_b64(&bytes))
                }
                None => {
                    let bytes = read_part(upload.path, offset, len).await?;
                    let sha256 = sha256_b64(&bytes);
                    let answer = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(upload.key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .checksum_sha256(&sha256)
                        .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                        .body(ByteStream::from(bytes))
                        .send()
                        .await;
                    let answer = match answer {
                        Ok(answer) => answer,
                        Err(err) if code_of(&err) == Some("NoSuchUpload") => return Ok(None),
                        // A completion cut off half way may have taken parts and the upload's
                        // record with it (s3s-fs): the rest is refused from then on.
                        Err(err) if resumed && refused_for_good(&err) => {
                            self.give_up_broken(upload, upload_id, "UploadPart", &err)
                                .await;
                            return Ok(None);
                        }
                        Err(err) => return Err(describe("UploadPart", &err)),
                    };
                    sent += len;
                    stored += 1;
                    progress
                        .parts_stored(upload_id, i32::try_from(stored).unwrap_or(i32::MAX))
                        .await
                        .map_err(StorageError::Progress)?;
                    let e_tag = answer.e_tag().map(str::to_owned).ok_or_else(|| {
                        StorageError::Unavailable("UploadPart: no ETag".to_owned())
                    })?;
                    (e_tag, sha256)
                }
            };
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(e_tag)
                    .checksum_sha256(sha256)
                    .build(),
            );
        }
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(upload.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        match done {
            Ok(_) => Ok(Some(sent)),
            Err(err) if code_of(&err) == Some("NoSuchUpload") => Ok(None),
            // Every part was accepted, yet the upload cannot be completed: a server whose
            // completion was cut off half way (s3s-fs drops the upload's record first) refuses
            // it from then on. Retrying would never end; a fresh upload of the same bytes does.
            Err(err) if resumed && refused_for_good(&err) => {
                self.give_up_broken(upload, upload_id, "CompleteMultipartUpload", &err)
                    .await;
                Ok(None)
            }
            Err(err) => Err(describe("CompleteMultipartUpload", &err)),
        }
    }

    pub(super) async fn put_multipart(
        &self,
        upload: &Upload<'_>,
        progress: &mut dyn Progress,
    ) -> Result<u64, StorageError> {
        let mut resume = upload.upload_id.map(str::to_owned);
        // At most one fresh upload after a resumed one turned out to be gone.
        for _ in 0..2 {
            let (upload_id, listed, resumed) = match resume.take() {
                Some(upload_id) => match self.listed_parts(upload.key, &upload_id).await? {
                    Some(listed) => (upload_id, listed, true),
                    None => {
                        tracing::info!(
                            key = upload.key,
                            "earlier multipart upload is gone, starting a new one"
                        );
                        progress
                            .upload_started(None)
                            .await
                            .map_err(StorageError::Progress)?;
                        continue;
                    }
                },
                None => {
                    self.abort_unrecorded(upload.key).await?;
                    let upload_id = self.create_upload(upload).await?;
                    // Saved before the first part: a crash from here on resumes this upload
                    // (or aborts it), never leaves it unknown.
                    if let Err(err) = progress.upload_started(Some(&upload_id)).await {
                        let _ = self.abort(upload.key, &upload_id).await;
                        return Err(StorageError::Progress(err));
                    }
                    (upload_id, BTreeMap::new(), false)
                }
            };
            if !listed.is_empty() {
                tracing::info!(
                    key = upload.key,
                    parts_stored = listed.len(),
                    "resuming multipart upload"
                );
            }
            match self
                .put_parts(upload, &upload_id, &listed, resumed, progress)
                .await?
            {
                Some(sent) => return Ok(sent),
                None => {
                    progress
                        .upload_started(None)
                        .await
                        .map_err(StorageError::Progress)?;
                }
            }
        }
        Err(StorageError::Unavailable(
            "multipart upload disappeared twice in a row".to_owned(),
        ))
    }
}
