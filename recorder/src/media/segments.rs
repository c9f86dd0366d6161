//! What a job remuxes: one recording file, or the HLS segments of one stream, read from its
//! playlist (`42.m3u8`, in the playlist's order) or from its directory (every `.ts` in it,
//! in natural order: `42-9.ts` before `42-10.ts`), joined into one MP4 with ffmpeg's concat
//! demuxer. The playlist is read here rather than given to ffmpeg: a playlist without
//! `#EXT-X-ENDLIST` is a live one, which ffmpeg's HLS reader would wait on for new segments.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use super::MediaError;

/// What a job remuxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One recording file.
    File(PathBuf),
    /// A stream's HLS segments, in order.
    Segments {
        /// The playlist or directory they were read from.
        origin: PathBuf,
        /// The segments.
        segments: Vec<PathBuf>,
    },
}

/// Whether `path` names an HLS playlist.
pub fn is_playlist(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("m3u8"))
}

/// Whether `path` names an MPEG-TS file (a segment, or a TS recording).
pub fn is_segment(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("ts"))
}

impl Source {
    /// The source a job's path names: a playlist, a directory of segments, or a file.
    pub async fn open(path: &Path) -> Result<Source, MediaError> {
        let meta = tokio::fs::metadata(path).await?;
        if meta.is_dir() {
            let segments = segments_in(path).await?;
            return Ok(Source::Segments {
                origin: path.to_path_buf(),
                segments,
            });
        }
        if is_playlist(path) {
            let text = tokio::fs::read_to_string(path).await?;
            let segments = playlist_segments(path, &text)?;
            for segment in &segments {
                if tokio::fs::metadata(segment).await.is_err() {
                    return Err(MediaError::Unreadable(format!(
                        "segment {} of the playlist is missing (the origin must keep every \
                         segment for a merge)",
                        segment.display()
                    )));
                }
            }
            return Ok(Source::Segments {
                origin: path.to_path_buf(),
                segments,
            });
        }
        Ok(Source::File(path.to_path_buf()))
    }

    /// The files the source is made of, removed once the recording is stored.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Source::File(path) => vec![path.as_path()],
            Source::Segments { origin, segments } => {
                let mut files: Vec<&Path> = segments.iter().map(PathBuf::as_path).collect();
                if !origin.is_dir() {
                    files.push(origin.as_path());
                }
                files
            }
        }
    }
}

/// The segments a playlist lists, in its order, resolved against its directory. A master
/// playlist, an fMP4 one, or one naming remote URLs is not something to merge.
pub fn playlist_segments(playlist: &Path, text: &str) -> Result<Vec<PathBuf>, MediaError> {
    let refuse = |why: &str| {
        Err(MediaError::Unreadable(format!(
            "playlist {}: {why}",
            playlist.display()
        )))
    };
    if !text.trim_start().starts_with("#EXTM3U") {
        return refuse("not an HLS playlist (no #EXTM3U)");
    }
    let dir = playlist.parent().unwrap_or(Path::new("."));
    let mut segments = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("#EXT-X-STREAM-INF") {
            return refuse("a master playlist: merge one of its media playlists");
        }
        if line.starts_with("#EXT-X-MAP") {
            return refuse("fMP4 segments (#EXT-X-MAP) are not merged, only MPEG-TS");
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains("://") {
            return refuse("names remote segments; only local files are merged");
        }
        let uri = line.split(['?', '#']).next().unwrap_or(line);
        segments.push(dir.join(uri));
    }
    if segments.is_empty() {
        return refuse("lists no segments");
    }
    Ok(segments)
}

/// The `.ts` files of `dir` (not hidden), in natural order.
async fn segments_in(dir: &Path) -> Result<Vec<PathBuf>, MediaError> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut segments = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && is_segment(&path) && entry.file_type().await?.is_file() {
            segments.push(path);
        }
    }
    if segments.is_empty() {
        return Err(MediaError::Unreadable(format!(
            "{} holds no .ts segments",
            dir.display()
        )));
    }
    segments.sort_by(|a, b| natural_order(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(segments)
}

/// Compares names with runs of digits as numbers: `s-9.ts` < `s-10.ts`.
pub fn natural_order(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let a_len = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                let b_len = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
                let (a_num, b_num) = (
                    a[..a_len].trim_start_matches('0'),
                    b[..b_len].trim_start_matches('0'),
                );
                let by_value = a_num.len().cmp(&b_num.len()).then_with(|| a_num.cmp(b_num));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (a, b) = (&a[a_len..], &b[b_len..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

/// The concat demuxer's list of `segments` (absolute paths, quoted).
pub fn concat_list(segments: &[PathBuf]) -> String {
    let mut list = String::from("ffconcat version 1.0\n");
    for segment in segments {
        let quoted = segment.to_string_lossy().replace('\'', "'\\''");
        list.push_str(&format!("file '{quoted}'\n"));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_names_sort_by_value() {
        let mut names = vec!["s-10.ts", "s-9.ts", "s-0.ts", "s-100.ts", "s-2.ts"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(names, ["s-0.ts", "s-2.ts", "s-9.ts", "s-10.ts", "s-100.ts"]);
    }

    #[test]
    fn a_playlist_lists_its_segments_in_order() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:2.0,\n42-0.ts\n#EXTINF:2.0,\n\
                    sub/42-1.ts?v=1\n#EXT-X-ENDLIST\n";
        let segments = playlist_segments(Path::new("/hls/42.m3u8"), text).unwrap();
        assert_eq!(
            segments,
            [
                PathBuf::from("/hls/42-0.ts"),
                PathBuf::from("/hls/sub/42-1.ts")
            ]
        );
    }

    #[test]
    fn playlists_that_cannot_be_merged_say_why() {
        for (text, why) in [
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n",
                "master",
            ),
            ("#EXTM3U\n#EXTINF:2,\nhttp://cdn/a.ts\n", "remote"),
            ("#EXTM3U\n#EXT-X-ENDLIST\n", "no segments"),
            ("hello\n", "#EXTM3U"),
        ] {
            let err = playlist_segments(Path::new("/hls/x.m3u8"), text).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
    }

    #[test]
    fn the_concat_list_quotes_paths() {
        let list = concat_list(&[PathBuf::from("/a/it's.ts")]);
        assert_eq!(list, "ffconcat version 1.0\nfile '/a/it'\\''s.ts'\n");
    }
}
