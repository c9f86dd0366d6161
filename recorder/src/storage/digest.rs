//! The checksums of a file, taken in one read of it: the whole file's CRC-64/NVME (its
//! identity, kept in the job table and the object's metadata) and the checksum of every part
//! it is uploaded in (sent with each part for the server to check: CRC32C unless configured
//! otherwise). The part checksums run on a second thread over the same chunks.
//!
//! The identity guards against accidents, not adversaries (whoever can write the bucket can
//! replace the object anyway): that a resumed upload goes on with the same bytes, and that an
//! object found under the key is the one an earlier attempt completed. A CRC does that at the
//! speed of reading the file, where a SHA-256 of it held the upload back by most of a second
//! per gigabyte: the pass must end before the upload starts, since the identity goes into the
//! object's metadata when the upload is created.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::PartChecksum;

/// How much is read at a time; also the unit the two hashing threads pass along.
const CHUNK: usize = 1024 * 1024;

/// Chunks waiting for the part hasher: what the pass holds in memory beyond one chunk.
const QUEUED_CHUNKS: usize = 4;

/// The parts a file is to be uploaded in, and the checksum each carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Bytes per part (the last may be shorter).
    pub size: u64,
    /// The checksum each part is sent with.
    pub checksum: PartChecksum,
}

/// What one pass over a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    /// The file's identity: its CRC-64/NVME, 16 hex digits.
    pub checksum: String,
    /// Its size in bytes.
    pub size: u64,
    /// The parts the part checksums are for (`None`: none were taken).
    pub plan: Option<PartPlan>,
    /// The checksum of each part, base64 (as S3's `x-amz-checksum-*` headers want it).
    pub parts: Vec<String>,
}

impl FileDigests {
    /// The part checksums, when they were taken for `plan`.
    pub fn parts_for(&self, plan: PartPlan) -> Option<&[String]> {
        (self.plan == Some(plan)).then_some(self.parts.as_slice())
    }
}

/// A part checksum being taken.
pub enum PartHasher {
    Crc32c(crc_fast::Digest),
    Sha256(Sha256),
}

impl PartHasher {
    pub fn new(checksum: PartChecksum) -> Self {
        match checksum {
            PartChecksum::Crc32c => {
                Self::Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
            }
            PartChecksum::Sha256 => Self::Sha256(Sha256::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Crc32c(digest) => digest.update(bytes),
            Self::Sha256(hasher) => hasher.update(bytes),
        }
    }

    /// The checksum, base64 of its big-endian bytes (as S3 wants it).
    pub fn finish(self) -> String {
        let engine = &base64::engine::general_purpose::STANDARD;
        match self {
            Self::Crc32c(digest) => {
                // A CRC32 is the low 32 bits of the crate's u64.
                let crc = u32::try_from(digest.finalize() & u64::from(u32::MAX)).unwrap_or(0);
                engine.encode(crc.to_be_bytes())
            }
            Self::Sha256(hasher) => engine.encode(hasher.finalize()),
        }
    }
}

/// The identity ([`FileDigests::checksum`]) of `bytes`.
pub fn checksum_of(bytes: &[u8]) -> String {
    hex_of(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, bytes))
}

/// Whether `text` is an identity as [`FileDigests::checksum`] gives it (not, say, the
/// sha256 that earlier versions identified files by).
pub fn is_checksum(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex_of(crc64: u64) -> String {
    format!("{crc64:016x}")
}

/// The `checksum` of `bytes`, base64.
pub fn part_checksum_of(checksum: PartChecksum, bytes: &[u8]) -> String {
    let mut hasher = PartHasher::new(checksum);
    hasher.update(bytes);
    hasher.finish()
}

/// Reads `path` once and returns its identity and size and, with `plan`, the checksum of each
/// of its parts. Runs on the blocking pool.
pub async fn digest_file(path: &Path, plan: Option<PartPlan>) -> std::io::Result<FileDigests> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || digest_blocking(&path, plan))
        .await
        .map_err(std::io::Error::other)?
}

fn digest_blocking(path: &Path, plan: Option<PartPlan>) -> std::io::Result<FileDigests> {
    let mut file = std::fs::File::open(path)?;
    let plan = plan.filter(|plan| plan.size > 0);
    std::thread::scope(|scope| {
        // The part hasher runs beside the reader, which hashes the whole file itself.
        let (to_parts, chunks) = mpsc::sync_channel::<Bytes>(QUEUED_CHUNKS);
        let parts = plan.map(|plan| scope.spawn(move || hash_parts(chunks, plan)));
        let mut whole = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
        let mut size = 0u64;
        loop {
            let chunk = read_chunk(&mut file)?;
            if chunk.is_empty() {
                break;
            }
            size += chunk.len() as u64;
            whole.update(&chunk);
            if parts.is_some() && to_parts.send(chunk).is_err() {
                break;
            }
        }
        drop(to_parts);
        let parts = match parts {
            Some(handle) => handle
                .join()
                .map_err(|_| std::io::Error::other("the part hasher panicked"))?,
            None => Vec::new(),
        };
        Ok(FileDigests {
            checksum: hex_of(whole.finalize()),
            size,
            plan,
            parts,
        })
    })
}

/// Up to [`CHUNK`] bytes; empty at the end of the file.
fn read_chunk(file: &mut std::fs::File) -> std::io::Result<Bytes> {
    let mut buffer = vec![0u8; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    buffer.truncate(filled);
    Ok(Bytes::from(buffer))
}

fn hash_parts(chunks: mpsc::Receiver<Bytes>, plan: PartPlan) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = PartHasher::new(plan.checksum);
    let mut in_part = 0u64;
    for chunk in chunks {
        let mut rest = chunk.as_ref();
        while !rest.is_empty() {
            let room = usize::try_from(plan.size - in_part).unwrap_or(usize::MAX);
            let (now, later) = rest.split_at(room.min(rest.len()));
            current.update(now);
            in_part += now.len() as u64;
            rest = later;
            if in_part == plan.size {
                let done = std::mem::replace(&mut current, PartHasher::new(plan.checksum));
                parts.push(done.finish());
                in_part = 0;
            }
        }
    }
    if in_part > 0 || parts.is_empty() {
        parts.push(current.finish());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
    }

    #[test]
    fn part_checksums_are_what_s3_expects() {
        // The CRC32C check value (RFC 3720's "123456789") and S3's base64 of its bytes.
        assert_eq!(
            part_checksum_of(PartChecksum::Crc32c, b"123456789"),
            base64::engine::general_purpose::STANDARD.encode(0xE306_9283_u32.to_be_bytes())
        );
        assert_eq!(part_checksum_of(PartChecksum::Crc32c, b""), "AAAAAA==");
        assert_eq!(
            part_checksum_of(PartChecksum::Sha256, b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[tokio::test]
    async fn a_files_identity_is_its_crc64_nvme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("check");
        // CRC-64/NVME's check value, over more than one chunk too.
        std::fs::write(&path, b"123456789").unwrap();
        let digests = digest_file(&path, None).await.unwrap();
        assert_eq!(digests.checksum, "ae8b14860a799888");
        assert_eq!(digests.size, 9);
        let long: Vec<u8> = (0..(2 * CHUNK + 7)).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &long).unwrap();
        let expected = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &long);
        let digests = digest_file(&path, None).await.unwrap();
        assert_eq!(digests.checksum, format!("{expected:016x}"));
        assert!(is_checksum(&digests.checksum));
        assert!(!is_checksum(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ));
        assert!(!is_checksum("AE8B14860A799888"));
    }

    #[tokio::test]
    async fn one_pass_gives_the_files_identity_and_each_parts_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        // Parts that end inside a chunk and a last part shorter than the others.
        let bytes: Vec<u8> = (0..(3 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let size = (CHUNK + CHUNK / 3) as u64;

        for checksum in [PartChecksum::Crc32c, PartChecksum::Sha256] {
            let plan = PartPlan { size, checksum };
            let digests = digest_file(&path, Some(plan)).await.unwrap();
            let identity = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &bytes);
            assert_eq!(digests.checksum, format!("{identity:016x}"));
            assert_eq!(digests.size, bytes.len() as u64);
            let expected: Vec<String> = bytes
                .chunks(size as usize)
                .map(|part| part_checksum_of(checksum, part))
                .collect();
            assert_eq!(digests.parts, expected, "{checksum:?}");
            assert_eq!(digests.parts_for(plan), Some(expected.as_slice()));
            let other_size = PartPlan {
                size: size + 1,
                ..plan
            };
            assert_eq!(digests.parts_for(other_size), None);
        }
        let sha = PartPlan {
            size,
            checksum: PartChecksum::Sha256,
        };
        let sha_parts = digest_file(&path, Some(sha)).await.unwrap();
        assert_eq!(sha_parts.parts[0], sha256_b64(&bytes[..size as usize]));
        let crc = PartPlan {
            checksum: PartChecksum::Crc32c,
            ..sha
        };
        assert_eq!(
            sha_parts.parts_for(crc),
            None,
            "taken for the other algorithm"
        );

        let whole_only = digest_file(&path, None).await.unwrap();
        assert_eq!(whole_only.checksum, sha_parts.checksum);
        assert!(whole_only.parts.is_empty());
    }

    #[tokio::test]
    async fn an_empty_file_is_one_empty_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let plan = PartPlan {
            size: 5 * 1024 * 1024,
            checksum: PartChecksum::Crc32c,
        };
        let digests = digest_file(&path, Some(plan)).await.unwrap();
        assert_eq!(digests.size, 0);
        assert_eq!(digests.parts, [part_checksum_of(PartChecksum::Crc32c, b"")]);
    }
}
