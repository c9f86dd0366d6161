//! HLS playlist rewriting: every URI the player will fetch from this edge gets the viewer's
//! token, so segments, variants, keys, init sections and LL-HLS parts pass the same check as
//! the playlist did.
//!
//! URIs appear in two places (RFC 8216 §4.1, §4.3 and the LL-HLS additions): on their own line
//! (media segments, variant playlists) and as the quoted `URI` attribute of the tags listed in
//! [`TAGS_WITH_URI`]. URIs that name another host are left alone: the token is a credential for
//! this edge only. "Another host" is decided the way a browser (WHATWG URL parsing) decides it,
//! so `/\\evil.example/x.ts` and `\t//evil.example` count as the other hosts they are.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

/// Tags whose `URI="…"` attribute points at something the player fetches.
pub const TAGS_WITH_URI: [&str; 9] = [
    "#EXT-X-KEY:",
    "#EXT-X-SESSION-KEY:",
    "#EXT-X-MAP:",
    "#EXT-X-MEDIA:",
    "#EXT-X-I-FRAME-STREAM-INF:",
    "#EXT-X-PART:",
    "#EXT-X-PRELOAD-HINT:",
    "#EXT-X-RENDITION-REPORT:",
    "#EXT-X-SESSION-DATA:",
];

/// Characters left as they are in a query value: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The `name=value` pair added to every rewritten URI, encoded once per request.
#[derive(Debug, Clone)]
pub struct TokenParam {
    name: String,
    pair: String,
}

impl TokenParam {
    /// Encodes `token` as the value of query parameter `name`.
    pub fn new(name: &str, token: &str) -> TokenParam {
        TokenParam {
            name: name.to_owned(),
            pair: format!("{name}={}", utf8_percent_encode(token, QUERY_VALUE)),
        }
    }

    /// `name=value`, ready to append to a query.
    pub fn pair(&self) -> &str {
        &self.pair
    }
}

/// The names under which viewers reach this edge: absolute URIs naming one of them are served
/// here.
#[derive(Debug, Clone, Default)]
pub struct EdgeNames {
    /// Lower-case `host` or `host:port` entries.
    names: Vec<String>,
}

impl EdgeNames {
    /// The edge's public names (`server.hostnames`).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a String>) -> EdgeNames {
        EdgeNames {
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    fn contains(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        self.names.iter().any(|name| match url.port() {
            Some(port) => name
                .strip_prefix(host)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|p| p.parse::<u16>() == Ok(port)),
            None => name == host,
        })
    }
}

/// Bounds on a rewritten playlist.
#[derive(Debug, Clone, Copy)]
pub struct RewriteLimits {
    /// Largest rewritten playlist, in bytes.
    pub max_output_bytes: usize,
    /// Longest input line, in bytes.
    pub max_line_bytes: usize,
}

/// Why a playlist could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The rewritten playlist would exceed [`RewriteLimits::max_output_bytes`].
    #[error("rewritten playlist too large")]
    TooLarge,
    /// A line exceeds [`RewriteLimits::max_line_bytes`].
    #[error("playlist line too long")]
    LineTooLong,
}

/// Rewrites `playlist` so that each URI served by this edge carries `token`.
///
/// Relative URIs, and absolute `http(s)` URIs naming one of `edge`'s names, are served here;
/// URIs on any other host, and other schemes (`data:`, `skd://`), are left untouched. Line
/// endings are preserved.
pub fn rewrite(
    playlist: &str,
    token: &TokenParam,
    edge: &EdgeNames,
    limits: RewriteLimits,
) -> Result<String, RewriteError> {
    let mut out = String::with_capacity(
        (playlist.len() + playlist.len() / 4 + 64).min(limits.max_output_bytes),
    );
    for line in playlist.split_inclusive('\n') {
        let (content, ending) = split_line_ending(line);
        if content.len() > limits.max_line_bytes {
            return Err(RewriteError::LineTooLong);
        }
        let trimmed = content.trim();
        if trimmed.is_empty() {
            out.push_str(line);
        } else if !trimmed.starts_with('#') {
            let start = content.len() - content.trim_start().len();
            out.push_str(&content[..start]);
            push_uri(&mut out, trimmed, token, edge);
            out.push_str(&content[start + trimmed.len()..]);
            out.push_str(ending);
        } else if TAGS_WITH_URI.iter().any(|tag| content.starts_with(tag)) {
            rewrite_uri_attribute(&mut out, content, token, edge);
            out.push_str(ending);
        } else {
            out.push_str(line);
        }
        if out.len() > limits.max_output_bytes {
            return Err(RewriteError::TooLarge);
        }
    }
    Ok(out)
}

fn split_line_ending(line: &str) -> (&str, &str) {
    let without_lf = line.strip_suffix('\n').unwrap_or(line);
    let content = without_lf.strip_suffix('\r').unwrap_or(without_lf);
    (content, &line[content.len()..])
}

/// Rewrites the value of the `URI` attribute (not `SERVER-URI` or any other name ending in
/// `URI`) of one tag line.
fn rewrite_uri_attribute(out: &mut String, line: &str, token: &TokenParam, host: &EdgeNames) {
    let Some(colon) = line.find(':') else {
        out.push_str(line);
        return;
    };
    let (head, attributes) = line.split_at(colon + 1);
    out.push_str(head);
    let mut rest = attributes;
    // Walk attribute by attribute so that a quoted value containing `,URI="` cannot confuse us.
    while !rest.is_empty() {
        let name_end = rest.find('=').unwrap_or(rest.len());
        let name = &rest[..name_end];
        out.push_str(&rest[..name_end.min(rest.len())]);
        rest = &rest[name_end..];
        let Some(after_eq) = rest.strip_prefix('=') else {
            break;
        };
        out.push('=');
        rest = after_eq;
        if let Some(quoted) = rest.strip_prefix('"') {
            let Some(close) = quoted.find('"') else {
                // Unterminated quote: leave the remainder as it is.
                out.push_str(rest);
                return;
            };
            let value = &quoted[..close];
            out.push('"');
            if name.trim() == "URI" {
                push_uri(out, value, token, host);
            } else {
                out.push_str(value);
            }
            out.push('"');
            rest = &quoted[close + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        if let Some(after_comma) = rest.strip_prefix(',') {
            out.push(',');
            rest = after_comma;
        } else {
            out.push_str(rest);
            return;
        }
    }
}

/// `uri` with the token added, as [`rewrite`] treats the URIs of a playlist (for a redirect's
/// `Location`, say).
pub fn with_token(uri: &str, token: &TokenParam, edge: &EdgeNames) -> String {
    let mut out = String::with_capacity(uri.len() + token.pair.len() + 1);
    push_uri(&mut out, uri, token, edge);
    out
}

/// Appends `uri` with the token added to its query (replacing a token already there), or
/// unchanged when it points elsewhere.
fn push_uri(out: &mut String, uri: &str, token: &TokenParam, host: &EdgeNames) {
    if !is_served_here(uri, host) {
        out.push_str(uri);
        return;
    }
    let (before_fragment, fragment) = match uri.find('#') {
        Some(at) => uri.split_at(at),
        None => (uri, ""),
    };
    let (path, query) = match before_fragment.find('?') {
        Some(at) => (&before_fragment[..at], Some(&before_fragment[at + 1..])),
        None => (before_fragment, None),
    };
    out.push_str(path);
    out.push('?');
    if let Some(query) = query {
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let key = pair.split('=').next().unwrap_or(pair);
            if key != token.name {
                out.push_str(pair);
                out.push('&');
            }
        }
    }
    out.push_str(&token.pair);
    out.push_str(fragment);
}

/// Whether `uri`, as a player resolves it against a playlist of this edge, points back at this
/// edge.
pub fn is_served_here(uri: &str, edge: &EdgeNames) -> bool {
    if let Some(plain) = plain_path(uri) {
        return plain;
    }
    // Anything else the way a browser reads it: resolved against a base on a host that cannot
    // exist, a result still on that host is relative to the edge.
    const BASE_HOST: &str = "edge.livegate.invalid";
    let Ok(base) = Url::parse("http://edge.livegate.invalid/live/playlist.m3u8") else {
        return false;
    };
    let Ok(resolved) = base.join(uri) else {
        return false;
    };
    if !matches!(resolved.scheme(), "http" | "https") {
        return false;
    }
    if resolved.host_str() == Some(BASE_HOST) {
        return resolved.scheme() == "http" && resolved.port().is_none();
    }
    edge.contains(&resolved)
}

/// The common cases, decided without a URL parser: `Some(true)` for a relative path or an
/// absolute path that cannot be read as an authority, `None` when the parser must decide.
fn plain_path(uri: &str) -> Option<bool> {
    let bytes = uri.as_bytes();
    let first = *bytes.first()?;
    // URL parsers strip tabs and newlines anywhere and C0 controls and spaces at the ends, so
    // `/\t/host` is `//host`; backslashes are slashes for http(s).
    if first <= b' '
        || bytes
            .iter()
            .any(|b| matches!(b, b'\t' | b'\r' | b'\n' | b'\\'))
    {
        return None;
    }
    if first == b'/' {
        return (bytes.get(1) != Some(&b'/')).then_some(true);
    }
    // A colon before any `/`, `?` or `#` may end a scheme.
    let head_end = uri.find(['/', '?', '#']).unwrap_or(uri.len());
    (!uri[..head_end].contains(':')).then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenParam {
        TokenParam::new("token", "NDJ8MTg5Mz+/Q==")
    }

    const LIMITS: RewriteLimits = RewriteLimits {
        max_output_bytes: 1 << 20,
        max_line_bytes: 4096,
    };

    fn rw(input: &str, names: &[&str]) -> String {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        rewrite(input, &token(), &EdgeNames::new(&names), LIMITS).unwrap()
    }

    #[test]
    fn backslash_and_whitespace_authorities_are_other_hosts() {
        for uri in [
            "/\\evil.example/x.ts",
            "\\\\evil.example/x.ts",
            "\\/evil.example/x.ts",
            "//evil.example/x.ts",
            "/\t/evil.example/x.ts",
            "\t//evil.example/x.ts",
            " //evil.example/x.ts",
            "http:\\\\evil.example/x.ts",
            "https:/\\evil.example/x.ts",
            "http://edge.example.evil.example/x.ts",
        ] {
            let input = format!("{uri}\n");
            assert_eq!(rw(&input, &["edge.example"]), input, "{uri:?}");
        }
        for uri in [
            "42-1.ts",
            "/live/42-1.ts",
            "a/b:c.ts",
            "http://edge.example/live/42-1.ts",
        ] {
            assert!(
                rw(&format!("{uri}\n"), &["edge.example"]).contains("token="),
                "{uri:?}"
            );
        }
    }

    #[test]
    fn rewritten_size_and_line_length_are_bounded() {
        let input = "a\n".repeat(10_000);
        let limits = RewriteLimits {
            max_output_bytes: 100_000,
            max_line_bytes: 4096,
        };
        assert_eq!(
            rewrite(&input, &token(), &EdgeNames::default(), limits),
            Err(RewriteError::TooLarge)
        );
        let long = format!("#EXTM3U\n{}.ts\n", "a".repeat(5000));
        assert_eq!(
            rewrite(&long, &token(), &EdgeNames::default(), LIMITS),
            Err(RewriteError::LineTooLong)
        );
    }

    const T: &str = "token=NDJ8MTg5Mz%2B%2FQ%3D%3D";

    #[test]
    fn media_playlist_segments_get_the_token() {
        let input = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n42-3.ts\n#EXTINF:2.000,\n42-4.ts?hls_ctx=ab12\n";
        let expected = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n42-3.ts?{T}\n#EXTINF:2.000,\n42-4.ts?hls_ctx=ab12&{T}\n");
        assert_eq!(rw(input, &[]), expected);
    }

    #[test]
    fn master_playlist_variants_and_renditions() {
        let input = "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/42.m3u8\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aud\"\r\n/live/42.m3u8?hls_ctx=x1\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"42-iframes.m3u8\"\r\n";
        let expected = format!("#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/42.m3u8?{T}\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aud\"\r\n/live/42.m3u8?hls_ctx=x1&{T}\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"42-iframes.m3u8?{T}\"\r\n");
        assert_eq!(rw(input, &[]), expected);
    }

    #[test]
    fn every_uri_tag_is_rewritten() {
        let lines = [
            "#EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\",IV=0x1",
            "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"/keys/k1\"",
            "#EXT-X-MAP:URI=\"42-init.mp4\",BYTERANGE=\"720@0\"",
            "#EXT-X-PART:DURATION=0.33334,URI=\"42-7.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"42-7.1.m4s\"",
            "#EXT-X-RENDITION-REPORT:URI=\"../alt/42.m3u8\",LAST-MSN=7,LAST-PART=0",
            "#EXT-X-SESSION-DATA:DATA-ID=\"com.example\",URI=\"data.json\"",
        ];
        for line in lines {
            let out = rw(&format!("{line}\n"), &[]);
            assert!(out.contains(&format!("?{T}\"")), "{line} -> {out}");
            assert_eq!(out.matches(T).count(), 1, "{out}");
        }
    }

    #[test]
    fn key_without_uri_and_other_uri_like_names_are_untouched() {
        let input = "#EXT-X-KEY:METHOD=NONE\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"https://steer.example/x\"\n#EXT-X-DATERANGE:ID=\"a\",X-URI=\"keep\"\n";
        assert_eq!(rw(input, &[]), input);
    }

    #[test]
    fn other_hosts_and_schemes_are_untouched() {
        let input = "https://cdn.other.example/live/42-1.ts\n//cdn.other.example/42-2.ts\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://key42\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"data:text/plain;base64,AAAA\"\n";
        assert_eq!(rw(input, &["edge.example"]), input);
    }

    #[test]
    fn absolute_uris_on_this_host_are_rewritten() {
        let input = "http://EDGE.example:8080/live/42-1.ts\n";
        let out = rw(input, &["edge.example:8080"]);
        assert_eq!(out, format!("http://EDGE.example:8080/live/42-1.ts?{T}\n"));
    }

    #[test]
    fn an_existing_token_is_replaced_not_duplicated() {
        let input = "42-1.ts?token=old&hls_ctx=z#frag\n";
        assert_eq!(rw(input, &[]), format!("42-1.ts?hls_ctx=z&{T}#frag\n"));
    }

    #[test]
    fn tags_blank_lines_and_missing_final_newline_are_kept() {
        let input = "#EXTM3U\n\n#EXTINF:2,\n42-1.ts";
        assert_eq!(
            rw(input, &[]),
            format!("#EXTM3U\n\n#EXTINF:2,\n42-1.ts?{T}")
        );
    }

    #[test]
    fn quoted_commas_do_not_split_attributes() {
        let input = "#EXT-X-MEDIA:TYPE=SUBTITLES,NAME=\"a,URI=x\",URI=\"subs.m3u8\"\n";
        let out = rw(input, &[]);
        assert!(out.contains(&format!("URI=\"subs.m3u8?{T}\"")), "{out}");
        assert_eq!(out.matches(T).count(), 1);
    }

    #[test]
    fn url_safe_tokens_need_no_encoding() {
        let param = TokenParam::new("token", "NDJ8MTg5-_");
        assert_eq!(
            rewrite("a.ts\n", &param, &EdgeNames::default(), LIMITS).unwrap(),
            "a.ts?token=NDJ8MTg5-_\n"
        );
    }
}
