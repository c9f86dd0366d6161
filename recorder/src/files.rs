//! What a file in a recording directory is, and when it is closed.
//!
//! - A final name (`.flv`, `.ts`, `.mp4`, not hidden) is a recording once its size has not
//!   changed for the quiet period.
//! - `*.tmp` (SRS writes its DVR file under it and renames it when done) and hidden files
//!   (ZLMediaKit's in-progress `.2026-12-01-09-31-08-0.mp4`) are still being written. One
//!   left untouched for the abandonment period belongs to an origin that died: it is
//!   reported so that it is parked as failed with the reason, never silently ignored.
//! - Anything else (playlists, our own partial files) is not a recording, and neither are
//!   the MPEG-TS segments beside or just below a playlist: they are the origin's live HLS.
//!
//! The room comes from the path as the origins name it: `42-1733045523.flv` (nginx-rtmp),
//! `42.1733045523000.flv` (SRS), `…/42/2026-12-01/09-31-08-0.mp4` (ZLMediaKit).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use livegate_core::token::parse_room_id;

/// How a file's name classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A finished-looking recording (final name).
    Recording,
    /// Still being written by an origin (`.tmp` or hidden).
    InProgress,
    /// An HLS playlist (`.m3u8`): with `watch.merge_hls`, its segments become one recording
    /// once it ends.
    Playlist,
    /// Not ours to handle.
    Other,
}

/// Where `path` really is, when that is inside one of `dirs` (both with symbolic links and
/// `..` resolved, so that neither `dir/../etc` nor a link out of `dir` passes); otherwise
/// why not. A path that does not exist (yet, or any more) is judged by its directory.
pub async fn confined(path: &Path, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    if dirs.is_empty() {
        return Err(
            "no recording directory is configured (watch.dirs or jobs.source_dirs)".to_owned(),
        );
    }
    let real = match tokio::fs::canonicalize(path).await {
        Ok(real) => real,
        Err(_) => match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) if name != ".." => tokio::fs::canonicalize(parent)
                .await
                .map(|parent| parent.join(name))
                .map_err(|err| format!("{}: {err}", parent.display()))?,
            _ => return Err("not a file's path".to_owned()),
        },
    };
    for dir in dirs {
        if let Ok(dir) = tokio::fs::canonicalize(dir).await {
            if real.starts_with(&dir) && real != dir {
                return Ok(real);
            }
        }
    }
    Err("outside the recording directories (watch.dirs, jobs.source_dirs)".to_owned())
}

/// The extensions of recordings the recorder remuxes.
const RECORDING_EXTENSIONS: [&str; 3] = ["flv", "ts", "mp4"];

/// Classifies `path` by its name.
pub fn kind_of(path: &Path) -> Kind {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return Kind::Other;
    };
    if name.ends_with(".part.mp4") || name.ends_with(".part") || name.ends_with(".reason.txt") {
        return Kind::Other;
    }
    let extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase);
    let media = |ext: &str| RECORDING_EXTENSIONS.contains(&ext);
    match extension.as_deref() {
        Some("tmp") => {
            // `42.1733045523000.flv.tmp`: only a recording's temporary file is ours.
            let inner = Path::new(name.trim_end_matches(".tmp"));
            match inner.extension().and_then(|ext| ext.to_str()) {
                Some(ext) if media(&ext.to_ascii_lowercase()) => Kind::InProgress,
                _ => Kind::Other,
            }
        }
        Some("m3u8") if !name.starts_with('.') => Kind::Playlist,
        Some(ext) if media(ext) && name.starts_with('.') => Kind::InProgress,
        Some(ext) if media(ext) => Kind::Recording,
        _ => Kind::Other,
    }
}

/// The room a recording belongs to, from its file name or one of its three nearest
/// directories.
pub fn room_of(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?.trim_start_matches('.');
    let lead: String = name.chars().take_while(char::is_ascii_digit).collect();
    let after = name[lead.len()..].chars().next();
    if matches!(after, Some('-' | '.' | '_')) {
        if let Some(room) = parse_room_id(&lead).and_then(|id| i64::try_from(id).ok()) {
            return Some(room);
        }
    }
    path.ancestors()
        .skip(1)
        .take(3)
        .filter_map(|dir| dir.file_name()?.to_str())
        .find_map(|dir| parse_room_id(dir).and_then(|id| i64::try_from(id).ok()))
}

/// When the recording started, unix milliseconds: the time in its name (nginx-rtmp seconds,
/// SRS milliseconds), else the file's modification time, else `fallback_ms`. The same file
/// always gives the same answer, whichever input asks.
pub fn started_at_of(path: &Path, fallback_ms: i64) -> i64 {
    let from_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| {
            let name = name.trim_start_matches('.');
            let lead: String = name.chars().take_while(char::is_ascii_digit).collect();
            let rest = name.get(lead.len() + 1..)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let value: i64 = digits.parse().ok()?;
            match digits.len() {
                10 => Some(value * 1000),
                13 => Some(value),
                _ => None,
            }
        });
    from_name
        .or_else(|| {
            let modified = std::fs::metadata(path).ok()?.modified().ok()?;
            let since = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
            i64::try_from(since.as_millis()).ok()
        })
        .unwrap_or(fallback_ms)
}

/// What the tracker decided about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A closed recording.
    Closed,
    /// An in-progress file nobody has written to for this long.
    Abandoned(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    size: u64,
    since: Instant,
}

/// Files waiting for their quiet period, by path.
#[derive(Debug)]
pub struct Tracker {
    quiet: Duration,
    abandoned: Duration,
    seen: HashMap<PathBuf, Seen>,
}

impl Tracker {
    /// A tracker closing files after `quiet` and giving up on in-progress ones after
    /// `abandoned`.
    pub fn new(quiet: Duration, abandoned: Duration) -> Self {
        Self {
            quiet,
            abandoned,
            seen: HashMap::new(),
        }
    }

    /// Starts (or keeps) watching `path`.
    pub fn note(&mut self, path: PathBuf) {
        self.seen.entry(path).or_insert(Seen {
            size: u64::MAX,
            since: Instant::now(),
        });
    }

    /// How many files are waiting.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Looks at every waiting file once; returns the decided ones (and forgets them, and the
    /// files that vanished).
    pub fn check(&mut self, now: Instant) -> Vec<(PathBuf, Kind, Verdict)> {
        let mut decided = Vec::new();
        let wall = SystemTime::now();
        self.seen.retain(|path, seen| {
            let Ok(meta) = std::fs::metadata(path) else {
                return false;
            };
            if !meta.is_file() {
                return false;
            }
            let size = meta.len();
            let unchanged_since = meta
                .modified()
                .ok()
                .and_then(|modified| wall.duration_since(modified).ok())
                .unwrap_or_default();
            if size != seen.size {
                *seen = Seen { size, since: now };
                // A file untouched for long enough is decided on its first look (the
                // start-up scan); otherwise it must hold still under our own eyes.
                if unchanged_since < self.quiet.max(self.abandoned) {
                    return true;
                }
            }
            let still = now.duration_since(seen.since).max(unchanged_since);
            let kind = kind_of(path);
            let verdict = match kind {
                Kind::Recording if still >= self.quiet => Some(Verdict::Closed),
                Kind::InProgress if still >= self.abandoned => Some(Verdict::Abandoned(still)),
                // A playlist is closed once it says the stream ended; one that never does
                // was left by an origin that stopped.
                Kind::Playlist if still >= self.quiet && playlist_ended(path) => {
                    Some(Verdict::Closed)
                }
                Kind::Playlist if still >= self.abandoned => Some(Verdict::Abandoned(still)),
                Kind::Other => return false,
                _ => None,
            };
            match verdict {
                Some(verdict) => {
                    decided.push((path.clone(), kind, verdict));
                    false
                }
                None => true,
            }
        });
        decided
    }
}

/// Whether the HLS playlist at `path` ends the stream (`#EXT-X-ENDLIST`).
pub fn playlist_ended(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.contains("#EXT-X-ENDLIST"))
}

/// How many directories up from a segment its playlist may be: ZLMediaKit writes
/// `live/42/hls.m3u8` and its segments under `live/42/2026-12-01/09/`.
const PLAYLIST_LEVELS: usize = 3;

/// Whether `path` is an MPEG-TS segment of an HLS playlist, finished or still being written
/// (SRS's `42-8.ts.tmp`): the origin's live HLS, which it deletes as the window moves on, and
/// part of that playlist's recording when HLS streams are merged; never a recording of its
/// own. It is one when a playlist lies beside it (SRS, nginx-rtmp; SRS's HLS and DVR share a
/// directory in its default layout) or in one of the directories just above it (ZLMediaKit).
pub fn is_playlist_segment(path: &Path) -> bool {
    let segment = crate::media::segments::is_segment(path)
        || (kind_of(path) == Kind::InProgress
            && crate::media::segments::is_segment(&path.with_extension("")));
    segment
        && path.ancestors().skip(1).take(PLAYLIST_LEVELS).any(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|entry| kind_of(&entry.path()) == Kind::Playlist)
            })
        })
}

/// Every file under `dirs` (recursively) that is a recording or in progress, skipping
/// `excluded` directories (the recorder's own work and failed directories).
pub fn scan(dirs: &[PathBuf], excluded: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        if excluded.iter().any(|skip| dir.starts_with(skip)) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(path),
                Ok(kind) if kind.is_file() && kind_of(&path) != Kind::Other => found.push(path),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_what_a_file_is() {
        assert_eq!(kind_of(Path::new("/r/42-1733045523.flv")), Kind::Recording);
        assert_eq!(
            kind_of(Path::new("/r/42.1733045523000.flv")),
            Kind::Recording
        );
        assert_eq!(
            kind_of(Path::new("/r/42.1733045523000.flv.tmp")),
            Kind::InProgress
        );
        assert_eq!(
            kind_of(Path::new("/r/live/42/2026-12-01/.09-31-08-0.mp4")),
            Kind::InProgress
        );
        assert_eq!(kind_of(Path::new("/r/42/a.ts")), Kind::Recording);
        assert_eq!(kind_of(Path::new("/r/42.m3u8")), Kind::Playlist);
        assert_eq!(kind_of(Path::new("/r/.42.m3u8")), Kind::Other);
        assert_eq!(kind_of(Path::new("/r/notes.tmp")), Kind::Other);
        assert_eq!(kind_of(Path::new("/w/7.123-45.part.mp4")), Kind::Other);
    }

    #[test]
    fn segments_beside_or_below_a_playlist_are_its_segments_finished_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"").unwrap();
            path
        };
        let (segment, writing, recording) = (
            touch("42-7.ts"),
            touch("42-8.ts.tmp"),
            touch("42.1733045523000.flv"),
        );
        assert!(!is_playlist_segment(&segment), "no playlist yet");
        touch("42.m3u8");
        assert!(is_playlist_segment(&segment));
        assert!(is_playlist_segment(&writing), "SRS's segment being written");
        assert!(
            !is_playlist_segment(&recording),
            "a DVR file beside the HLS"
        );
        assert!(!is_playlist_segment(&touch("42.1733045523000.flv.tmp")));

        // ZLMediaKit: live/42/hls.m3u8, its segments in dated directories below it.
        let stream = dir.path().join("zlm/live/42");
        let hour = stream.join("2026-12-01/09");
        std::fs::create_dir_all(&hour).unwrap();
        let zlm_segment = hour.join("32-33_0.ts");
        std::fs::write(&zlm_segment, b"").unwrap();
        assert!(!is_playlist_segment(&zlm_segment), "no playlist yet");
        std::fs::write(stream.join("hls.m3u8"), b"").unwrap();
        assert!(is_playlist_segment(&zlm_segment));
    }

    #[test]
    fn the_room_comes_from_the_name_or_a_directory() {
        assert_eq!(room_of(Path::new("/r/42-1733045523.flv")), Some(42));
        assert_eq!(room_of(Path::new("/r/42.1733045523000.flv.tmp")), Some(42));
        assert_eq!(
            room_of(Path::new("/r/live/42/2026-12-01/09-31-08-0.mp4")),
            Some(42)
        );
        assert_eq!(
            room_of(Path::new("/r/live/42/2026-12-01/.09-31-08-0.mp4")),
            Some(42)
        );
        assert_eq!(room_of(Path::new("/r/live/x/show.flv")), None);
    }

    #[test]
    fn the_start_time_comes_from_the_name_when_it_has_one() {
        assert_eq!(
            started_at_of(Path::new("/nope/42-1733045523.flv"), 7),
            1_733_045_523_000
        );
        assert_eq!(
            started_at_of(Path::new("/nope/42.1733045523123.flv"), 7),
            1_733_045_523_123
        );
        assert_eq!(started_at_of(Path::new("/nope/42.flv"), 7), 7);
    }

    #[tokio::test]
    async fn only_paths_inside_the_recording_directories_are_confined() {
        let root = tempfile::tempdir().unwrap();
        let recordings = root.path().join("rec");
        let elsewhere = root.path().join("etc");
        std::fs::create_dir_all(recordings.join("live")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(recordings.join("live/42-1.flv"), b"flv").unwrap();
        std::fs::write(elsewhere.join("passwd"), b"secret").unwrap();
        std::os::unix::fs::symlink(elsewhere.join("passwd"), recordings.join("link.flv")).unwrap();
        let dirs = [recordings.clone()];
        let real = |p: &str| std::fs::canonicalize(root.path()).unwrap().join(p);

        assert_eq!(
            confined(&recordings.join("live/42-1.flv"), &dirs).await,
            Ok(real("rec/live/42-1.flv"))
        );
        // Gone already (or not yet there): judged by its directory.
        assert_eq!(
            confined(&recordings.join("live/42-2.flv"), &dirs).await,
            Ok(real("rec/live/42-2.flv"))
        );
        for outside in [
            elsewhere.join("passwd"),
            recordings.join("../etc/passwd"),
            recordings.join("link.flv"),
            recordings.join("live/../../etc/passwd"),
            recordings.clone(),
            PathBuf::from("/nonexistent/dir/42.flv"),
        ] {
            assert!(
                confined(&outside, &dirs).await.is_err(),
                "{} passed",
                outside.display()
            );
        }
        assert!(confined(&recordings.join("live/42-1.flv"), &[])
            .await
            .unwrap_err()
            .contains("no recording directory"));
    }
}
