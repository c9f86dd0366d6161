//! Which requests the proxy serves: path patterns such as `/{app}/{stream}.flv`, matched
//! against the request path to find the kind of request and the room it names.
//!
//! Patterns compile to anchored regular expressions run by a bounded backtracker, which visits
//! each (state, position) pair at most once: matching costs time linear in the path whatever the
//! pattern, so a hostile path costs no more than its length (an unbounded backtracking matcher
//! spends quadratic time on `/live/----…x.ts` against `{stream}-{seq}`). The visited set is
//! sized for the longest path the proxy accepts.

use livegate_core::token::parse_room_id;
use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use serde::Deserialize;

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

/// The origin software in front of which the proxy runs; it decides the default routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// SRS: `/{app}/{stream}.flv`, `/{app}/{stream}.m3u8`, segments `/{app}/{stream}-{seq}.ts`.
    #[default]
    Srs,
    /// ZLMediaKit: `/{app}/{stream}.live.flv`, `/{app}/{stream}/hls.m3u8`, segments in dated
    /// sub-directories (`/{app}/{stream}/2026-12-01/09/29-24_21.ts`).
    Zlmediakit,
    /// nginx-rtmp (HLS only, served under `/{app}/`): `/{app}/{stream}.m3u8`,
    /// `/{app}/{stream}-{seq}.ts`.
    NginxRtmp,
}

impl Flavour {
    /// The default FLV patterns.
    pub fn flv(self) -> Vec<String> {
        match self {
            Flavour::Srs => strings(&["/{app}/{stream}.flv"]),
            Flavour::Zlmediakit => strings(&["/{app}/{stream}.live.flv"]),
            // nginx-rtmp has no HTTP-FLV.
            Flavour::NginxRtmp => Vec::new(),
        }
    }

    /// The default playlist patterns.
    pub fn playlist(self) -> Vec<String> {
        match self {
            Flavour::Srs => strings(&["/{app}/{stream}.m3u8", "/{app}/{stream}-{seq}.m3u8"]),
            Flavour::Zlmediakit => {
                strings(&["/{app}/{stream}/hls.m3u8", "/{app}/{stream}/hls.fmp4.m3u8"])
            }
            Flavour::NginxRtmp => strings(&["/{app}/{stream}.m3u8", "/{app}/{stream}_{seq}.m3u8"]),
        }
    }

    /// The default segment patterns.
    pub fn segment(self) -> Vec<String> {
        match self {
            Flavour::Srs => ["ts", "m4s", "aac", "mp4"]
                .iter()
                .map(|ext| format!("/{{app}}/{{stream}}-{{seq}}.{ext}"))
                .collect(),
            Flavour::Zlmediakit => ["ts", "mp4", "m4s"]
                .iter()
                .map(|ext| format!("/{{app}}/{{stream}}/{{rest}}.{ext}"))
                .collect(),
            Flavour::NginxRtmp => {
                strings(&["/{app}/{stream}-{seq}.ts", "/{app}/{stream}_{seq}.ts"])
            }
        }
    }
}

fn strings(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| (*p).to_owned()).collect()
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
    /// Only `{app}`, `{stream}`, `{seq}` and `{rest}` exist.
    #[error("unknown placeholder `{{{0}}}` (use {{app}}, {{stream}}, {{seq}} or {{rest}})")]
    UnknownPlaceholder(String),
    /// `{app}` and `{stream}` name one thing each.
    #[error("`{{{0}}}` may appear only once")]
    Repeated(&'static str),
    /// A `{` without its `}`.
    #[error("unclosed `{{`")]
    Unclosed,
    /// Two placeholders in a row cannot be told apart.
    #[error("placeholders must be separated by literal text")]
    Adjacent,
    /// The pattern is too long to compile.
    #[error("pattern too long")]
    TooComplex,
}

/// Longest path segment routed: Linux's `NAME_MAX`.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// One parsed path pattern: its regular expression and where its captures are.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    /// Capture group of `{app}`, if the pattern has one.
    app: Option<usize>,
    /// Capture group of `{stream}`.
    stream: usize,
}

impl Pattern {
    /// Parses a pattern such as `/{app}/{stream}-{seq}.ts`.
    ///
    /// `{app}`, `{stream}` and `{seq}` each take one or more characters of a single path
    /// segment; `{rest}` takes one or more characters that may span segments. Every capture is
    /// as short as the rest of the pattern allows, leftmost first, so `{stream}-{seq}.ts`
    /// splits `42-7.ts` at the first `-`.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError::NotAbsolute);
        }
        let mut source = String::from("^");
        let mut groups = 0;
        let (mut app, mut stream) = (None, None);
        let mut last_was_capture = false;
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or(PatternError::Unclosed)?;
                if last_was_capture {
                    return Err(PatternError::Adjacent);
                }
                let class = match &after[..end] {
                    "app" if app.is_some() => return Err(PatternError::Repeated("app")),
                    "stream" if stream.is_some() => return Err(PatternError::Repeated("stream")),
                    "app" => {
                        groups += 1;
                        app = Some(groups);
                        "([^/]+?)"
                    }
                    "stream" => {
                        groups += 1;
                        stream = Some(groups);
                        "([^/]+?)"
                    }
                    "seq" => "(?:[^/]+?)",
                    "rest" => "(?:.+?)",
                    other => return Err(PatternError::UnknownPlaceholder(other.to_owned())),
                };
                source.push_str(class);
                last_was_capture = true;
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                source.push_str(&regex_syntax::escape(&rest[..end]));
                last_was_capture = false;
                rest = &rest[end..];
            }
        }
        source.push('$');
        let stream = stream.ok_or(PatternError::NoStream)?;
        let pattern = Pattern {
            source,
            app,
            stream,
        };
        compile(&[&pattern.source])?;
        Ok(pattern)
    }

    /// `(app, stream)` of a match of this pattern.
    fn captured<'p>(&self, path: &'p str, captures: &Captures) -> Option<(&'p str, &'p str)> {
        // Captures end before an ASCII byte (`/` or a literal) or at the path's end, so they
        // fall on character boundaries; `get` checks it anyway.
        let text = |group: usize| {
            let span = captures.get_group(group)?;
            path.get(span.start..span.end)
        };
        let stream = text(self.stream)?;
        Some((self.app.and_then(text).unwrap_or(""), stream))
    }
}

/// Compiles anchored patterns into one matcher (the `regex` crate's engines: linear in the path).
fn compile(sources: &[&str]) -> Result<Regex, PatternError> {
    Regex::builder()
        // Bytes, not Unicode: `[^/]` is then a handful of states instead of a UTF-8 automaton
        // (the path was checked to be UTF-8 before routing).
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .nfa_size_limit(Some(1 << 20)),
        )
        .build_many(sources)
        // The literal text is escaped and the placeholders are fixed expressions: only an
        // absurdly long configured pattern fails.
        .map_err(|_| PatternError::TooComplex)
}

/// All configured patterns, tried in order: FLV, playlists, segments.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(Kind, Pattern, Regex)>,
    /// Every pattern at once: one search finds the first that matches.
    all: Regex,
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
            for text in patterns {
                let pattern = Pattern::parse(text)?;
                let regex = compile(&[&pattern.source])?;
                routes.push((kind, pattern, regex));
            }
        }
        let sources: Vec<&str> = routes.iter().map(|(_, p, _)| p.source.as_str()).collect();
        let all = compile(&sources)?;
        Ok(RouteTable { routes, all })
    }

    /// Finds the route for a (decoded, validated) request path.
    ///
    /// The first pattern whose `{stream}` is a room id wins; failing that, the first pattern
    /// that matches at all (so `42-hi.m3u8` is room 42's variant under
    /// `/{app}/{stream}-{seq}.m3u8`, even though `/{app}/{stream}.m3u8` also matches it).
    pub fn find(&self, path: &str) -> Option<Matched> {
        // No file system stores a longer name, so no media path has a longer segment; refusing
        // them bounds the work of a capture within a segment whatever the path's length.
        if path
            .split('/')
            .any(|segment| segment.len() > MAX_SEGMENT_BYTES)
        {
            return None;
        }
        let mut captures = self.all.create_captures();
        self.all.captures(path.as_bytes(), &mut captures);
        let first = captures.pattern()?.as_usize();
        let (kind, pattern, _) = self.routes.get(first)?;
        let (app, stream) = pattern.captured(path, &captures)?;
        let matched = Matched {
            kind: *kind,
            room_id: parse_room_id(stream),
            stream_key: format!("{app}/{stream}"),
        };
        if matched.room_id.is_some() {
            return Some(matched);
        }
        // Rare (and refused anyway): a later pattern may still name a room.
        for (kind, pattern, regex) in &self.routes[first + 1..] {
            let mut captures = regex.create_captures();
            regex.captures(path.as_bytes(), &mut captures);
            let Some((app, stream)) = pattern.captured(path, &captures) else {
                continue;
            };
            if let Some(room_id) = parse_room_id(stream) {
                return Some(Matched {
                    kind: *kind,
                    room_id: Some(room_id),
                    stream_key: format!("{app}/{stream}"),
                });
            }
        }
        Some(matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(flavour: Flavour) -> RouteTable {
        RouteTable::new(&flavour.flv(), &flavour.playlist(), &flavour.segment()).unwrap()
    }

    fn found(table: &RouteTable, path: &str) -> (Kind, Option<u64>, String) {
        let matched = table
            .find(path)
            .unwrap_or_else(|| panic!("{path} not routed"));
        (matched.kind, matched.room_id, matched.stream_key)
    }

    #[test]
    fn srs_default_paths() {
        let table = table(Flavour::Srs);
        assert_eq!(
            found(&table, "/live/42.flv"),
            (Kind::Flv, Some(42), "live/42".to_owned())
        );
        assert_eq!(found(&table, "/live/42.m3u8").0, Kind::Playlist);
        let variant = found(&table, "/live/42-hi.m3u8");
        assert_eq!((variant.0, variant.1), (Kind::Playlist, Some(42)));
        for path in [
            "/live/42-7.ts",
            "/live/42-7.m4s",
            "/live/42-0.aac",
            "/live/42-init.mp4",
        ] {
            let (kind, room, _) = found(&table, path);
            assert_eq!((kind, room), (Kind::Segment, Some(42)), "{path}");
        }
    }

    #[test]
    fn zlmediakit_default_paths() {
        let table = table(Flavour::Zlmediakit);
        assert_eq!(
            found(&table, "/live/42.live.flv"),
            (Kind::Flv, Some(42), "live/42".to_owned())
        );
        assert_eq!(
            found(&table, "/live/42/hls.m3u8"),
            (Kind::Playlist, Some(42), "live/42".to_owned())
        );
        assert_eq!(found(&table, "/live/42/hls.fmp4.m3u8").0, Kind::Playlist);
        assert_eq!(
            found(&table, "/live/42/2026-12-01/09/29-24_21.ts"),
            (Kind::Segment, Some(42), "live/42".to_owned())
        );
        assert_eq!(table.find("/live/42.flv"), None);
        assert_eq!(
            table
                .find("/record/live/42/2026-12-01/x.mp4")
                .unwrap()
                .room_id,
            None
        );
    }

    #[test]
    fn nginx_rtmp_default_paths() {
        let table = table(Flavour::NginxRtmp);
        assert_eq!(
            table.find("/live/42.flv"),
            None,
            "nginx-rtmp has no HTTP-FLV"
        );
        assert_eq!(
            found(&table, "/live/42.m3u8"),
            (Kind::Playlist, Some(42), "live/42".to_owned())
        );
        assert_eq!(found(&table, "/live/42_low.m3u8").1, Some(42));
        assert_eq!(
            found(&table, "/live/42-3.ts"),
            (Kind::Segment, Some(42), "live/42".to_owned())
        );
        assert_eq!(found(&table, "/live/42_low-3.ts").1, Some(42));
    }

    #[test]
    fn unknown_paths_do_not_match() {
        let table = table(Flavour::Srs);
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
        let table = table(Flavour::Srs);
        assert_eq!(table.find("/live/abc.flv").unwrap().room_id, None);
        assert_eq!(table.find("/live/042.flv").unwrap().room_id, None);
        assert_eq!(table.find("/live/hi-x.m3u8").unwrap().room_id, None);
    }

    #[test]
    fn long_hostile_paths_are_matched_without_blowing_up() {
        let table = table(Flavour::Srs);
        let path = format!("/live/{}x.ts", "-".repeat(MAX_SEGMENT_BYTES - 4));
        let matched = table.find(&path).unwrap();
        assert_eq!((matched.kind, matched.room_id), (Kind::Segment, None));
        let path = format!("/live/{}x.ts", "-".repeat(64 * 1024));
        assert_eq!(table.find(&path), None, "no file has a name that long");
        let table = super::tests::table(Flavour::Zlmediakit);
        let deep = format!(
            "/live/42/{}x.ts",
            format!("{}/", "-".repeat(250)).repeat(256)
        );
        assert_eq!(table.find(&deep).unwrap().room_id, Some(42));
    }

    #[test]
    fn regex_syntax_in_patterns_is_literal() {
        let table = RouteTable::new(&["/a.b/{stream}(1).flv".to_owned()], &[], &[]).unwrap();
        assert_eq!(table.find("/a.b/42(1).flv").unwrap().room_id, Some(42));
        assert_eq!(table.find("/aXb/42(1).flv"), None);
        assert_eq!(table.find("/a.b/42.flv"), None);
    }

    #[test]
    fn patterns_are_validated() {
        let err = |text| Pattern::parse(text).unwrap_err();
        assert_eq!(err("live/{stream}.flv"), PatternError::NotAbsolute);
        assert_eq!(err("/{app}/x.flv"), PatternError::NoStream);
        assert_eq!(
            err("/{app}/{room}.flv"),
            PatternError::UnknownPlaceholder("room".into())
        );
        assert_eq!(err("/{stream"), PatternError::Unclosed);
        assert_eq!(err("/{app}{stream}.flv"), PatternError::Adjacent);
        assert_eq!(
            err("/{stream}/{stream}.flv"),
            PatternError::Repeated("stream")
        );
        assert!(Pattern::parse("/hls/{stream}/index.m3u8").is_ok());
        assert!(Pattern::parse("/{app}/{stream}/{rest}.ts").is_ok());
    }
}
