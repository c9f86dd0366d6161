//! Where a cached body lives: in memory, or — for a segment large enough that copying it into
//! every viewer's socket is most of what serving it costs — in a sealed memory file that the
//! kernel sends from directly (`sendfile`), the way nginx sends its cache files.
//!
//! A sealed file is written once, when the fill completes, and can never change after: the
//! seals forbid writing, growing and shrinking it, so the pages a socket is still sending
//! from stay the bytes that were cached even after the entry is evicted.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use rustix::fs::{MemfdFlags, SealFlags};

/// Bodies at least this large are sealed into a file; smaller ones (playlists, LL-HLS parts)
/// stay in memory, where rewriting and copying them costs less than the file would save.
pub const SEALED_MIN_BYTES: usize = 128 * 1024;

/// Sealed files open now. Each holds a descriptor, and descriptors are also what viewers
/// connect with: at most a quarter of the process's limit go to sealed files.
static SEALED_OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many sealed files may be open at once: a quarter of the soft limit on open files.
fn sealed_file_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024);
        usize::try_from(open_files / 4).unwrap_or(usize::MAX)
    })
}

/// Whether a failure to make a sealed file was logged already (it is a property of the host,
/// not of one segment: said once).
static SEAL_FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

/// A cached body.
#[derive(Debug)]
pub enum Body {
    /// In memory.
    Memory(Bytes),
    /// In a sealed memory file.
    Sealed(SealedFile),
}

impl Body {
    /// `bytes` as the cache keeps them: sealed when large enough and the host allows it.
    pub fn keep(bytes: Bytes) -> Body {
        if bytes.len() < SEALED_MIN_BYTES {
            return Body::Memory(bytes);
        }
        match SealedFile::new(&bytes) {
            Ok(sealed) => Body::Sealed(sealed),
            Err(err) => {
                if !SEAL_FAILURE_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %err,
                        "cannot keep segments in sealed memory files; they stay in memory and are copied to each viewer"
                    );
                }
                Body::Memory(bytes)
            }
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Body::Memory(bytes) => bytes.len(),
            Body::Sealed(sealed) => sealed.len,
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole body in memory (a copy when sealed).
    pub fn bytes(&self) -> io::Result<Bytes> {
        self.range_from(0)
    }

    /// The body from byte `start` on, in memory (a copy when sealed).
    pub fn range_from(&self, start: usize) -> io::Result<Bytes> {
        match self {
            Body::Memory(bytes) => Ok(bytes.slice(start.min(bytes.len())..)),
            Body::Sealed(sealed) => sealed.read_from(start),
        }
    }

    /// The sealed file, when the body is in one.
    pub fn sealed(&self) -> Option<&SealedFile> {
        match self {
            Body::Sealed(sealed) => Some(sealed),
            Body::Memory(_) => None,
        }
    }
}

/// Bytes in a memory file that can no longer change.
#[derive(Debug)]
pub struct SealedFile {
    file: File,
    len: usize,
    _counted: Counted,
}

/// One open sealed file in [`SEALED_OPEN`], for as long as it lives.
#[derive(Debug)]
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        SEALED_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SealedFile {
    /// A memory file holding `bytes`, sealed.
    pub fn new(bytes: &[u8]) -> io::Result<SealedFile> {
        let limit = sealed_file_limit();
        if SEALED_OPEN.fetch_add(1, Ordering::Relaxed) >= limit {
            SEALED_OPEN.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::other(format!(
                "{limit} sealed files are open, a quarter of the open-file limit"
            )));
        }
        // Counted from here: dropping what is made below, on any error, uncounts it.
        let counted = Counted;
        let fd = rustix::fs::memfd_create(
            "livegate-segment",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        rustix::fs::fcntl_add_seals(
            &file,
            SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
        )?;
        Ok(SealedFile {
            file,
            len: bytes.len(),
            _counted: counted,
        })
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file, to send from.
    pub fn fd(&self) -> impl AsFd + '_ {
        &self.file
    }

    fn read_from(&self, start: usize) -> io::Result<Bytes> {
        let start = start.min(self.len);
        let mut buffer = BytesMut::zeroed(self.len - start);
        self.file.read_exact_at(&mut buffer, start as u64)?;
        Ok(buffer.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_stay_in_memory_and_large_ones_are_sealed() {
        let small = Body::keep(Bytes::from_static(b"#EXTM3U\n"));
        assert!(small.sealed().is_none());
        assert_eq!(&small.bytes().unwrap()[..], b"#EXTM3U\n");

        let segment: Vec<u8> = (0..SEALED_MIN_BYTES + 7).map(|i| (i % 251) as u8).collect();
        let large = Body::keep(Bytes::from(segment.clone()));
        let sealed = large.sealed().expect("sealed");
        assert_eq!(sealed.len(), segment.len());
        assert_eq!(large.len(), segment.len());
        assert_eq!(&large.bytes().unwrap()[..], &segment[..]);
        assert_eq!(&large.range_from(100).unwrap()[..], &segment[100..]);
        assert!(large.range_from(segment.len() + 5).unwrap().is_empty());
    }

    #[test]
    fn a_sealed_file_cannot_be_changed() {
        let sealed = SealedFile::new(b"segment bytes").unwrap();
        let mut file = &sealed.file;
        assert!(file.write_all(b"other").is_err());
        assert!(sealed.file.set_len(3).is_err());
        assert!(sealed.file.set_len(100).is_err());
        assert_eq!(&sealed.read_from(0).unwrap()[..], b"segment bytes");
    }
}
