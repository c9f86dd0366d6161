//! S3-compatible storage through `aws-sdk-s3`.
//!
//! A file larger than one part goes up as a multipart upload, `parts_in_flight` parts at a
//! time, each streamed from its range of the file (memory: a read buffer per part in flight)
//! with its checksum. The upload id is handed to the caller
//! before the first part, so that after a crash the next attempt lists the parts already
//! stored and sends only the missing ones. The object carries the file's identity (its
//! CRC-64/NVME) in its metadata; after completion its size and identity are confirmed with
//! `HeadObject`, which is also how a retry recognises an object an earlier attempt completed.
//!
//! Neither credentials nor presigned URLs are ever logged or put in an error.

mod multipart;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{OpenUpload, Progress, Storage, StorageError, Stored, Upload};
use crate::config::{ChecksumWhen, PartChecksum, S3Config};

/// The user metadata key holding the object's identity (the file's CRC-64/NVME, hex).
const CHECKSUM_META: &str = "crc64nvme";

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// An S3 bucket as storage.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    parts_in_flight: usize,
    part_checksum: PartChecksum,
}

/// What the storage says about an object's key.
enum Existing {
    /// It holds exactly the file.
    Same,
    /// Absent, or something else.
    Other,
}

fn describe<E>(what: &str, err: &SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or_default();
            let text = format!("{what}: HTTP {status} {code} {message}")
                .trim_end()
                .to_owned();
            let refused = matches!(status, 401 | 403)
                || matches!(
                    code,
                    "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"
                );
            if refused {
                StorageError::Refused(format!(
                    "{text} (check storage.s3.access_key, storage.s3.secret_key and the \
                     bucket's permissions)"
                ))
            } else {
                StorageError::Unavailable(text)
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            StorageError::Unavailable(format!(
                "{what}: cannot reach the endpoint: {}",
                DisplayErrorContext(err)
            ))
        }
        other => StorageError::Unavailable(format!("{what}: {}", DisplayErrorContext(other))),
    }
}

fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|raw| raw.status().as_u16())
}

impl S3Storage {
    /// A client for `config` (no request is made until used).
    pub fn new(config: &S3Config) -> Self {
        let credentials = Credentials::new(
            config.access_key.expose(),
            config.secret_key.expose(),
            None,
            None,
            "livegate-config",
        );
        let checksums = match config.checksum {
            ChecksumWhen::WhenSupported => (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            ),
            ChecksumWhen::WhenRequired => (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            ),
        };
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .endpoint_url(&config.endpoint)
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(config.path_style)
            .request_checksum_calculation(checksums.0)
            .response_checksum_validation(checksums.1)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_millis(config.request_timeout_ms))
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(conf),
            bucket: config.bucket.clone(),
            prefix: config.key_prefix.clone(),
            parts_in_flight: config.parts_in_flight.max(1),
            part_checksum: config.part_checksum,
        }
    }

    /// The SDK client (for tests and tools).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// A URL that lets its holder GET `key` until `expires_in` passes, for private buckets.
    /// It is a credential: hand it to the one who asked, never log it.
    pub async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        self.presign_get_from(key, SystemTime::now(), expires_in)
            .await
    }

    /// [`presign_get`](Self::presign_get) signed as of `start`: links signed for the same
    /// start are the same URL, which a browser can cache.
    pub async fn presign_get_from(
        &self,
        key: &str,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        let presigning = PresigningConfig::builder()
            .start_time(start)
            .expires_in(expires_in)
            .build()
            .map_err(|err| StorageError::Refused(format!("presigning: {err}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|err| describe("presign GetObject", &err))?;
        Ok(request.uri().to_owned())
    }

    fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn existing(&self, upload: &Upload<'_>) -> Result<Existing, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(upload.key)
            .send()
            .await
        {
            Ok(head) => {
                let size = head.content_length().and_then(|n| u64::try_from(n).ok());
                let checksum = head.metadata().and_then(|meta| meta.get(CHECKSUM_META));
                if size == Some(upload.size) && checksum.is_some_and(|c| c == upload.checksum) {
                    Ok(Existing::Same)
                } else {
                    Ok(Existing::Other)
                }
            }
            Err(err) if status_of(&err) == Some(404) => Ok(Existing::Other),
            Err(err) => Err(describe("HeadObject", &err)),
        }
    }

    async fn confirm(&self, upload: &Upload<'_>) -> Result<(), StorageError> {
        match self.existing(upload).await? {
            Existing::Same => Ok(()),
            Existing::Other => Err(StorageError::Mismatch(format!(
                "{} is not {} bytes with CRC-64/NVME {} after the upload",
                upload.key, upload.size, upload.checksum
            ))),
        }
    }

    /// Sends a file of at most one part in one request, with the part checksum the server
    /// checks the body against.
    async fn put_single(&self, upload: &Upload<'_>) -> Result<(), StorageError> {
        let checksum = self
            .checksum_of_part(upload, &multipart::whole(upload))
            .await?;
        let body = ByteStream::from_path(upload.path)
            .await
            .map_err(|err| StorageError::Io(std::io::Error::other(err)))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(upload.key)
            .content_type("video/mp4")
            .metadata(CHECKSUM_META, upload.checksum)
            .body(body);
        match self.part_checksum {
            PartChecksum::Crc32c => request.checksum_crc32_c(checksum),
            PartChecksum::Sha256 => request.checksum_sha256(checksum),
        }
        .send()
        .await
        .map_err(|err| describe("PutObject", &err))?;
        Ok(())
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(
        &self,
        upload: &Upload<'_>,
        progress: &mut dyn Progress,
    ) -> Result<Stored, StorageError> {
        let url = self.url_of(upload.key);
        // An earlier attempt may have completed the object and died before recording it.
        if let Existing::Same = self.existing(upload).await? {
            if let Some(upload_id) = upload.upload_id {
                // Complete, so the upload is gone; abort in case it lingers on a server that
                // keeps parts around.
                let _ = self.abort(upload.key, upload_id).await;
            }
            return Ok(Stored { url, bytes_sent: 0 });
        }
        let bytes_sent = if upload.size <= upload.part_size && upload.upload_id.is_none() {
            self.put_single(upload).await?;
            upload.size
        } else {
            self.put_multipart(upload, progress).await?
        };
        self.confirm(upload).await?;
        Ok(Stored { url, bytes_sent })
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|err| match status_of(&err) {
                Some(404) => StorageError::Refused(format!(
                    "bucket {} does not exist (storage.s3.bucket)",
                    self.bucket
                )),
                _ => describe("HeadBucket", &err),
            })
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if code_of(&err) == Some("NoSuchUpload") || status_of(&err) == Some(404) => {
                Ok(())
            }
            Err(err) => Err(describe("AbortMultipartUpload", &err)),
        }
    }

    async fn stale_uploads(
        &self,
        max_age: Duration,
    ) -> Result<Option<Vec<OpenUpload>>, StorageError> {
        let cutoff = SystemTime::now()
            .checked_sub(max_age)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut stale = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let listed = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(markers.0.clone())
                .set_upload_id_marker(markers.1.clone())
                .send()
                .await;
            let listed = match listed {
                Ok(listed) => listed,
                Err(err)
                    if code_of(&err) == Some("NotImplemented") || status_of(&err) == Some(501) =>
                {
                    return Ok(None);
                }
                Err(err) => return Err(describe("ListMultipartUploads", &err)),
            };
            for upload in listed.uploads() {
                let old = upload.initiated().is_some_and(|at| at.secs() < cutoff);
                if let (true, Some(key), Some(id)) = (old, upload.key(), upload.upload_id()) {
                    stale.push(OpenUpload {
                        key: key.to_owned(),
                        upload_id: id.to_owned(),
                    });
                }
            }
            match (listed.is_truncated(), listed.next_key_marker()) {
                (Some(true), Some(key)) => {
                    markers = (
                        Some(key.to_owned()),
                        listed.next_upload_id_marker().map(str::to_owned),
                    );
                }
                _ => break,
            }
        }
        Ok(Some(stale))
    }

    async fn put_picture(&self, key: &str, jpeg: Bytes) -> Result<String, StorageError> {
        let sha256 = Sha256::digest(&jpeg);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("image/jpeg")
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(sha256))
            .body(ByteStream::from(jpeg))
            .send()
            .await
            .map_err(|err| describe("PutObject", &err))?;
        Ok(self.url_of(key))
    }
}
