//! The multipart half of [`S3Storage`]: which parts an upload already holds, sending the
//! missing ones from disk (a few at a time, each streamed from its range of the file, never
//! held in memory whole), and completing it.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::Path;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use md5::{Digest as _, Md5};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{code_of, describe, status_of, S3Storage, CHECKSUM_META};
use crate::config::PartChecksum;
use crate::storage::digest::{part_checksum_of, PartHasher};
use crate::storage::{Progress, Storage as _, StorageError, Upload};

/// Bytes read from disk at a time while a part streams out: what a part in flight holds.
const READ_BUFFER: usize = 256 * 1024;

/// A part as the storage reports it.
#[derive(Debug, Clone)]
struct ListedPart {
    size: u64,
    e_tag: Option<String>,
    /// Its checksum, of the storage's part checksum algorithm.
    checksum: Option<String>,
}

/// Where one part lies in the file.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartRange {
    /// From 0.
    index: usize,
    /// S3's part number, from 1.
    number: i32,
    offset: u64,
    len: u64,
}

/// How sending one part ended.
enum SentPart {
    /// Stored: what completion needs of it.
    Stored {
        part: PartRange,
        e_tag: String,
        checksum: String,
    },
    /// The upload is gone, or refused for good.
    Gone,
}

/// The parts of `upload`, in order.
fn part_ranges(upload: &Upload<'_>) -> Result<Vec<PartRange>, StorageError> {
    let count = upload.size.div_ceil(upload.part_size).max(1);
    (0..count)
        .map(|index| {
            let number = i32::try_from(index + 1)
                .map_err(|_| StorageError::Mismatch("too many parts".to_owned()))?;
            let offset = index * upload.part_size;
            Ok(PartRange {
                index: usize::try_from(index).unwrap_or(usize::MAX),
                number,
                offset,
                len: upload.part_size.min(upload.size - offset),
            })
        })
        .collect()
}

/// The whole of a file small enough to go up in one request, as its one part.
pub(super) fn whole(upload: &Upload<'_>) -> PartRange {
    PartRange {
        index: 0,
        number: 1,
        offset: 0,
        len: upload.size,
    }
}

/// The checksum of part `index` from the file's checksum pass, when it was taken for this
/// upload's parts.
fn part_digest(upload: &Upload<'_>, index: usize) -> Option<String> {
    upload
        .part_checksums
        .filter(|parts| parts.len() == upload.size.div_ceil(upload.part_size).max(1) as usize)
        .and_then(|parts| parts.get(index).cloned())
}

/// Whether the server answered with a client error that a retry of the same request cannot
/// change (not a timeout or throttling).
fn refused_for_good<E>(err: &aws_sdk_s3::error::SdkError<E, super::HttpResponse>) -> bool {
    status_of(err)
        .is_some_and(|status| (400..500).contains(&status) && status != 408 && status != 429)
}

/// Reads bytes `offset .. offset + len` of `path` (for a part already stored whose listing
/// lacks its ETag: rare, bounded by one part).
async fn read_part(path: &Path, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut buffer = vec![0u8; len];
    file.read_exact(&mut buffer).await?;
    Ok(Bytes::from(buffer))
}

/// The `checksum` (base64) of bytes `offset .. offset + len` of `path`, read in bounded
/// chunks.
async fn checksum_of_range(
    path: &Path,
    offset: u64,
    len: u64,
    checksum: PartChecksum,
) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    let mut hasher = PartHasher::new(checksum);
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(READ_BUFFER as u64)).unwrap_or(READ_BUFFER);
        let read = file.read(&mut buffer[..want]).await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the MP4 is shorter than recorded",
            ));
        }
        hasher.update(&buffer[..read]);
        left -= read as u64;
    }
    Ok(hasher.finish())
}

fn md5_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(bytes)))
}

impl S3Storage {
    /// The checksum `part` is sent with: the one the pass that checksummed the file took,
    /// else taken from its range now.
    pub(super) async fn checksum_of_part(
        &self,
        upload: &Upload<'_>,
        part: &PartRange,
    ) -> Result<String, StorageError> {
        match part_digest(upload, part.index) {
            Some(checksum) => Ok(checksum),
            None => Ok(
                checksum_of_range(upload.path, part.offset, part.len, self.part_checksum).await?,
            ),
        }
    }

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
                            checksum: match self.part_checksum {
                                PartChecksum::Crc32c => part.checksum_crc32_c(),
                                PartChecksum::Sha256 => part.checksum_sha256(),
                            }
                            .map(str::to_owned),
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
            .metadata(CHECKSUM_META, upload.checksum)
            .checksum_algorithm(match self.part_checksum {
                PartChecksum::Crc32c => ChecksumAlgorithm::Crc32C,
                PartChecksum::Sha256 => ChecksumAlgorithm::Sha256,
            })
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

    /// The checksum and ETag completion needs for a part the storage already holds, from the
    /// listing where it says them, else from the same bytes on disk (not sent again).
    async fn stored_part(
        &self,
        upload: &Upload<'_>,
        part: &PartRange,
        listed: &ListedPart,
    ) -> Result<(String, String), StorageError> {
        let known = listed
            .checksum
            .clone()
            .or_else(|| part_digest(upload, part.index));
        match (&listed.e_tag, known) {
            (Some(e_tag), Some(checksum)) => Ok((e_tag.clone(), checksum)),
            (e_tag, checksum) => {
                let bytes = read_part(upload.path, part.offset, part.len).await?;
                let e_tag = e_tag.clone().unwrap_or_else(|| md5_etag(&bytes));
                let checksum =
                    checksum.unwrap_or_else(|| part_checksum_of(self.part_checksum, &bytes));
                Ok((e_tag, checksum))
            }
        }
    }

    /// Sends one part, streamed from its range of the file, with its checksum (taken by the
    /// pass that checksummed the file, else from the range now).
    async fn send_part(
        &self,
        upload: &Upload<'_>,
        upload_id: &str,
        part: PartRange,
        resumed: bool,
    ) -> Result<SentPart, StorageError> {
        let checksum = self.checksum_of_part(upload, &part).await?;
        let body = ByteStream::read_from()
            .path(upload.path)
            .offset(part.offset)
            .length(Length::Exact(part.len))
            .buffer_size(READ_BUFFER)
            .build()
            .await
            .map_err(|err| StorageError::Io(std::io::Error::other(err)))?;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(upload.key)
            .upload_id(upload_id)
            .part_number(part.number)
            .content_length(i64::try_from(part.len).unwrap_or(i64::MAX))
            .body(body);
        let answer = match self.part_checksum {
            PartChecksum::Crc32c => request.checksum_crc32_c(&checksum),
            PartChecksum::Sha256 => request.checksum_sha256(&checksum),
        }
        .send()
        .await;
        match answer {
            Ok(answer) => {
                let e_tag = answer
                    .e_tag()
                    .map(str::to_owned)
                    .ok_or_else(|| StorageError::Unavailable("UploadPart: no ETag".to_owned()))?;
                Ok(SentPart::Stored {
                    part,
                    e_tag,
                    checksum,
                })
            }
            Err(err) if code_of(&err) == Some("NoSuchUpload") => Ok(SentPart::Gone),
            // A completion cut off half way may have taken parts and the upload's record with
            // it (s3s-fs): the rest is refused from then on.
            Err(err) if resumed && refused_for_good(&err) => {
                self.give_up_broken(upload, upload_id, "UploadPart", &err)
                    .await;
                Ok(SentPart::Gone)
            }
            Err(err) => Err(describe("UploadPart", &err)),
        }
    }

    /// Sends the parts `listed` lacks, `parts_in_flight` at a time, and completes the upload.
    /// `Ok(None)`: the upload is gone (or, `resumed`, refused for good: a completion cut off
    /// half way).
    async fn put_parts(
        &self,
        upload: &Upload<'_>,
        upload_id: &str,
        listed: &BTreeMap<i32, ListedPart>,
        resumed: bool,
        progress: &mut dyn Progress,
    ) -> Result<Option<u64>, StorageError> {
        let ranges = part_ranges(upload)?;
        let mut completed: BTreeMap<i32, (String, String)> = BTreeMap::new();
        let mut missing = Vec::new();
        for part in ranges {
            match listed
                .get(&part.number)
                .filter(|have| have.size == part.len)
            {
                Some(have) => {
                    let done = self.stored_part(upload, &part, have).await?;
                    completed.insert(part.number, done);
                }
                None => missing.push(part),
            }
        }
        let mut sent = 0u64;
        let mut stored = completed.len();
        let mut missing = missing.into_iter();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < self.parts_in_flight {
                let Some(part) = missing.next() else { break };
                in_flight.push(self.send_part(upload, upload_id, part, resumed));
            }
            let Some(result) = in_flight.next().await else {
                break;
            };
            match result? {
                SentPart::Stored {
                    part,
                    e_tag,
                    checksum,
                } => {
                    sent += part.len;
                    stored += 1;
                    completed.insert(part.number, (e_tag, checksum));
                    progress
                        .parts_stored(upload_id, i32::try_from(stored).unwrap_or(i32::MAX))
                        .await
                        .map_err(StorageError::Progress)?;
                }
                SentPart::Gone => return Ok(None),
            }
        }
        drop(in_flight);
        let parts = completed
            .into_iter()
            .map(|(number, (e_tag, checksum))| {
                let part = CompletedPart::builder().part_number(number).e_tag(e_tag);
                match self.part_checksum {
                    PartChecksum::Crc32c => part.checksum_crc32_c(checksum),
                    PartChecksum::Sha256 => part.checksum_sha256(checksum),
                }
                .build()
            })
            .collect();
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(upload.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
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
