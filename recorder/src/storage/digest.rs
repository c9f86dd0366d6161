//! The checksums of a file, taken in one read of it: the whole file's sha256 (the object's
//! identity, kept in the job table and the object's metadata) and, for a multipart upload, the
//! sha256 of every part (sent with each part for the server to check). The two hashes run on
//! two threads over the same chunks, so the pass costs one read and about one hash of time.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// How much is read at a time; also the unit the two hashing threads pass along.
const CHUNK: usize = 1024 * 1024;

/// Chunks waiting for the part hasher: what the pass holds in memory beyond one chunk.
const QUEUED_CHUNKS: usize = 4;

/// What one pass over a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    /// The file's sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The part size the part checksums are for (`None`: none were taken).
    pub part_size: Option<u64>,
    /// The sha256 of each part, base64 (as S3's `x-amz-checksum-sha256` wants it).
    pub parts: Vec<String>,
}

impl FileDigests {
    /// The part checksums, when they were taken for parts of `part_size` bytes.
    pub fn parts_for(&self, part_size: u64) -> Option<&[String]> {
        (self.part_size == Some(part_size)).then_some(self.parts.as_slice())
    }
}

/// The sha256 of `bytes`, base64.
pub fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// Reads `path` once and returns its sha256 and size and, with `part_size`, the sha256 of
/// each `part_size` piece of it. Runs on the blocking pool.
pub async fn digest_file(path: &Path, part_size: Option<u64>) -> std::io::Result<FileDigests> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || digest_blocking(&path, part_size))
        .await
        .map_err(std::io::Error::other)?
}

fn digest_blocking(path: &Path, part_size: Option<u64>) -> std::io::Result<FileDigests> {
    let mut file = std::fs::File::open(path)?;
    let part_size = part_size.filter(|size| *size > 0);
    std::thread::scope(|scope| {
        // The part hasher runs beside the reader, which hashes the whole file itself.
        let (to_parts, chunks) = mpsc::sync_channel::<Bytes>(QUEUED_CHUNKS);
        let parts = part_size.map(|part_size| scope.spawn(move || hash_parts(chunks, part_size)));
        let mut whole = Sha256::new();
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
            sha256: hex::encode(whole.finalize()),
            size,
            part_size,
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

fn hash_parts(chunks: mpsc::Receiver<Bytes>, part_size: u64) -> Vec<String> {
    let encode =
        |hasher: Sha256| base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
    let mut parts = Vec::new();
    let mut current = Sha256::new();
    let mut in_part = 0u64;
    for chunk in chunks {
        let mut rest = chunk.as_ref();
        while !rest.is_empty() {
            let room = usize::try_from(part_size - in_part).unwrap_or(usize::MAX);
            let (now, later) = rest.split_at(room.min(rest.len()));
            current.update(now);
            in_part += now.len() as u64;
            rest = later;
            if in_part == part_size {
                parts.push(encode(std::mem::take(&mut current)));
                in_part = 0;
            }
        }
    }
    if in_part > 0 || parts.is_empty() {
        parts.push(encode(current));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_pass_gives_the_files_and_each_parts_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        // Parts that end inside a chunk and a last part shorter than the others.
        let bytes: Vec<u8> = (0..(3 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let part_size = (CHUNK + CHUNK / 3) as u64;

        let digests = digest_file(&path, Some(part_size)).await.unwrap();
        assert_eq!(digests.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(digests.size, bytes.len() as u64);
        let expected: Vec<String> = bytes.chunks(part_size as usize).map(sha256_b64).collect();
        assert_eq!(digests.parts, expected);
        assert_eq!(digests.parts_for(part_size), Some(expected.as_slice()));
        assert_eq!(digests.parts_for(part_size + 1), None);

        let whole_only = digest_file(&path, None).await.unwrap();
        assert_eq!(whole_only.sha256, digests.sha256);
        assert!(whole_only.parts.is_empty());
    }

    #[tokio::test]
    async fn an_empty_file_is_one_empty_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let digests = digest_file(&path, Some(5 * 1024 * 1024)).await.unwrap();
        assert_eq!(digests.size, 0);
        assert_eq!(digests.parts, [sha256_b64(b"")]);
    }
}
