//! Which requests the proxy serves: path patterns such as `/{app}/{stream}.flv`, matched
//! against the request path to find the kind of request and the room it names.

use std::borrow::Cow;

use livegate_core::token::parse_room_id;

/// What a request asks for; decides how it is proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An HTTP-FLV stream: a response that lasts as long as the viewer watches.
    Flv,
    /// An HLS playlist, rewritten so that every URI carries the viewer's token.
    Playlist,
    /// An HLS segment (or init segment), passed through.
    Segment,
}

impl Kind {
    /// Every kind, for metric pre-registration.
    pub const ALL: [Kind; 3] = [Kind::Flv, Kind::Playlist, Kind::Segment];

    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Flv => "flv",
            Kind::Playlist => "playlist",
            Kind::Segment => "segment",
        }
    }
}

/// A request path matched against the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// What is asked for.
    pub kind: Kind,
    /// The room named by `{stream}`, when it is a canonical decimal room id.
    pub room_id: Option<u64>,
    /// `app/stream`: the key that pins a stream to one origin.
    pub stream_key: String,
}

/// Why a route pattern is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns are absolute paths.
    #[error("must start with `/`")]
    NotAbsolute,
    /// `{stream}` is how the room is found, so every pattern needs it.
    #[error("must contain the `{{stream}}` placeholder")]
    NoStream,
    /// Only `{app}`, `{stream}` and `{seq}` exist.
    #[error("unknown placeholder `{{{0}}}` (use {{app}}, {{stream}} or {{seq}})")]
    UnknownPlaceholder(String),
    /// A `{` without its `}`.
    #[error("unclosed `{{`")]
    Unclosed,
    /// Two placeholders in a row cannot be told apart.
    #[error("placeholders must be separated by literal text")]
    Adjacent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    App,
    Stream,
    Seq,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Capture(Placeholder),
}

/// One compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Part>,
}

impl Pattern {
    /// Compiles a pattern such as `/{app}/{stream}-{seq}.ts`.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError::NotAbsolute);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or(PatternError::Unclosed)?;
                let placeholder = match &after[..end] {
                    "app" => Placeholder::App,
                    "stream" => Placeholder::Stream,
                    "seq" => Placeholder::Seq,
                    other => return Err(PatternError::UnknownPlaceholder(other.to_owned())),
                };
                if matches!(parts.last(), Some(Part::Capture(_))) {
                    return Err(PatternError::Adjacent);
                }
                parts.push(Part::Capture(placeholder));
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                parts.push(Part::Literal(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
        if !parts.contains(&Part::Capture(Placeholder::Stream)) {
            return Err(PatternError::NoStream);
        }
        Ok(Pattern { parts })
    }

    /// Matches `path`, returning `(app, stream)` on success.
    fn matches<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        let mut captures = Captures::default();
        match_parts(&self.parts, path, &mut captures).then_some((captures.app, captures.stream))
    }
}

#[derive(Default)]
struct Captures<'p> {
    app: &'p str,
    stream: &'p str,
}

/// A capture takes one or more characters of a single path segment; the shortest capture that
/// lets the rest of the pattern match wins (so `{stream}-{seq}.ts` splits `42-7.ts` at the
/// first `-`).
fn match_parts<'p>(parts: &[Part], path: &'p str, captures: &mut Captures<'p>) -> bool {
    match parts.split_first() {
        None => path.is_empty(),
        Some((Part::Literal(literal), rest)) => path
            .strip_prefix(literal.as_str())
            .is_some_and(|remaining| match_parts(rest, remaining, captures)),
        Some((Part::Capture(placeholder), rest)) => {
            let segment_end = path.find('/').unwrap_or(path.len());
            for end in 1..=segment_end {
                if !path.is_char_boundary(end) {
                    continue;
                }
                if match_parts(rest, &path[end..], captures) {
                    match placeholder {
                        Placeholder::App => captures.app = &path[..end],
                        Placeholder::Stream => captures.stream = &path[..end],
                        Placeholder::Seq => {}
                    }
                    return true;
                }
            }
            false
        }
    }
}

/// All configured patterns, tried in order: FLV, playlists, segments.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(Kind, Pattern)>,
}

impl RouteTable {
    /// Compiles the three pattern lists.
    pub fn new(
        flv: &[String],
        playlist: &[String],
        segment: &[String],
    ) -> Result<RouteTable, PatternError> {
        let mut routes = Vec::new();
        for (kind, patterns) in [
            (Kind::Flv, flv),
            (Kind::Playlist, playlist),
            (Kind::Segment, segment),
        ] {
            for pattern in patterns {
                routes.push((kind, Pattern::parse(pattern)?));
            }
        }
        Ok(RouteTable { routes })
    }

    /// Finds the route for a (decoded, validated) request path.
    ///
    /// The first pattern whose `{stream}` is a room id wins; failing that, the first pattern
    /// that matches at all (so `42-hi.m3u8` is room 42's variant under
    /// `/{app}/{stream}-{seq}.m3u8`, even though `/{app}/{stream}.m3u8` also matches it).
    pub fn find(&self, path: &str) -> Option<Matched> {
        let mut fallback = None;
        for (kind, pattern) in &self.routes {
            let Some((app, stream)) = pattern.matches(path) else {
                continue;
            };
            let room_id = parse_room_id(stream);
            if room_id.is_some() || fallback.is_none() {
                let matched = Matched {
                    kind: *kind,
                    room_id,
                    stream_key: format!("{app}/{stream}"),
                };
                if room_id.is_some() {
                    return Some(matched);
                }
                fallback = Some(matched);
            }
        }
        fallback
    }
}

/// Why a request path is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// `..` as a path segment, literally or percent-encoded.
    #[error("path traversal")]
    Traversal,
    /// A NUL byte, literally or as `%00`.
    #[error("NUL byte in path")]
    Nul,
    /// An encoded `/` or `\`, or a literal backslash: ways to smuggle separators past a router.
    #[error("encoded separator in path")]
    EncodedSeparator,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEncoding,
    /// An encoded `%`: a path meant to be decoded twice.
    #[error("double percent-encoding")]
    DoubleEncoding,
}

/// Checks a raw request path and returns it percent-decoded.
///
/// Media paths never need encoded separators, dot segments, double encoding or control bytes,
/// so anything of the sort is refused outright rather than normalised: the origin, which
/// decodes once, must see the same path that was authorised.
pub fn check_path(raw: &str) -> Result<Cow<'_, str>, UnsafePath> {
    if !raw.contains(['%', '\\', '\0']) {
        return if has_dot_segment(raw) {
            Err(UnsafePath::Traversal)
        } else {
            Ok(Cow::Borrowed(raw))
        };
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UnsafePath::BadEncoding)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(UnsafePath::BadEncoding)?;
            match value {
                0 => return Err(UnsafePath::Nul),
                b'/' | b'\\' => return Err(UnsafePath::EncodedSeparator),
                b'%' => return Err(UnsafePath::DoubleEncoding),
                _ => decoded.push(value),
            }
            i += 3;
        } else {
            match byte {
                0 => return Err(UnsafePath::Nul),
                b'\\' => return Err(UnsafePath::EncodedSeparator),
                _ => decoded.push(byte),
            }
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| UnsafePath::BadEncoding)?;
    if has_dot_segment(&decoded) {
        return Err(UnsafePath::Traversal);
    }
    Ok(Cow::Owned(decoded))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == ".." || segment == ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoutesConfig;

    fn table() -> RouteTable {
        let routes = RoutesConfig::default();
        RouteTable::new(&routes.flv, &routes.playlist, &routes.segment).unwrap()
    }

    #[test]
    fn srs_default_paths() {
        let table = table();
        let flv = table.find("/live/42.flv").unwrap();
        assert_eq!(flv.kind, Kind::Flv);
        assert_eq!(flv.room_id, Some(42));
        assert_eq!(flv.stream_key, "live/42");

        assert_eq!(table.find("/live/42.m3u8").unwrap().kind, Kind::Playlist);
        let variant = table.find("/live/42-hi.m3u8").unwrap();
        assert_eq!((variant.kind, variant.room_id), (Kind::Playlist, Some(42)));
        for path in [
            "/live/42-7.ts",
            "/live/42-7.m4s",
            "/live/42-0.aac",
            "/live/42-init.mp4",
        ] {
            let seg = table.find(path).unwrap();
            assert_eq!(seg.kind, Kind::Segment, "{path}");
            assert_eq!(seg.room_id, Some(42), "{path}");
        }
    }

    #[test]
    fn unknown_paths_do_not_match() {
        let table = table();
        for path in [
            "/",
            "/live/42",
            "/live/42.mp3",
            "/a/b/42.flv",
            "/live/.flv",
            "/live/42.flv/x",
        ] {
            assert_eq!(table.find(path), None, "{path}");
        }
    }

    #[test]
    fn non_numeric_streams_have_no_room() {
        let found = table().find("/live/abc.flv").unwrap();
        assert_eq!(found.room_id, None);
        assert_eq!(table().find("/live/042.flv").unwrap().room_id, None);
        assert_eq!(table().find("/live/hi-x.m3u8").unwrap().room_id, None);
    }

    #[test]
    fn patterns_are_validated() {
        assert_eq!(
            Pattern::parse("live/{stream}.flv"),
            Err(PatternError::NotAbsolute)
        );
        assert_eq!(Pattern::parse("/{app}/x.flv"), Err(PatternError::NoStream));
        assert_eq!(
            Pattern::parse("/{app}/{room}.flv"),
            Err(PatternError::UnknownPlaceholder("room".into()))
        );
        assert_eq!(Pattern::parse("/{stream"), Err(PatternError::Unclosed));
        assert_eq!(
            Pattern::parse("/{app}{stream}.flv"),
            Err(PatternError::Adjacent)
        );
        assert!(Pattern::parse("/hls/{stream}/index.m3u8").is_ok());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(
            check_path("/live/../etc/passwd"),
            Err(UnsafePath::Traversal)
        );
        assert_eq!(check_path("/live/%2e%2e/x.flv"), Err(UnsafePath::Traversal));
        assert_eq!(check_path("/live/%2E./x.flv"), Err(UnsafePath::Traversal));
        assert_eq!(
            check_path("/live/..%2fx.flv"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(check_path("/live/42%00.flv"), Err(UnsafePath::Nul));
        assert_eq!(
            check_path("/live\\42.flv"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(check_path("/live/%zz.flv"), Err(UnsafePath::BadEncoding));
        assert_eq!(
            check_path("/live/%252e%252e/x.flv"),
            Err(UnsafePath::DoubleEncoding)
        );
        assert_eq!(check_path("/live/./42.flv"), Err(UnsafePath::Traversal));
        assert_eq!(check_path("/live/4%32.flv").unwrap(), "/live/42.flv");
        assert_eq!(check_path("/live/a..b.flv").unwrap(), "/live/a..b.flv");
        assert!(matches!(check_path("/live/42.flv"), Ok(Cow::Borrowed(_))));
    }
}
