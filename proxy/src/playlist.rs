//! HLS playlist rewriting: every URI the player will fetch from this edge gets the viewer's
//! token, so segments, variants, keys, init sections and LL-HLS parts pass the same check as
//! the playlist did.
//!
//! URIs appear in two places (RFC 8216 §4.1, §4.3 and the LL-HLS additions): on their own line
//! (media segments, variant playlists) and as the quoted `URI` attribute of the tags listed in
//! [`TAGS_WITH_URI`]. URIs that name another host are left alone: the token is a credential for
//! this edge only.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

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
}

/// Rewrites `playlist` so that each URI served by this edge carries `token`.
///
/// `request_host` is the `Host` the viewer used: absolute `http(s)://` URIs on that host are
/// treated like relative ones; absolute URIs on any other host, and other schemes (`data:`,
/// `skd://`), are left untouched. Line endings are preserved.
pub fn rewrite(playlist: &str, token: &TokenParam, request_host: Option<&str>) -> String {
    let mut out = String::with_capacity(playlist.len() + playlist.len() / 4 + 64);
    for line in playlist.split_inclusive('\n') {
        let (content, ending) = split_line_ending(line);
        let trimmed = content.trim();
        if trimmed.is_empty() {
            out.push_str(line);
        } else if !trimmed.starts_with('#') {
            let start = content.len() - content.trim_start().len();
            out.push_str(&content[..start]);
            push_uri(&mut out, trimmed, token, request_host);
            out.push_str(&content[start + trimmed.len()..]);
            out.push_str(ending);
        } else if TAGS_WITH_URI.iter().any(|tag| content.starts_with(tag)) {
            rewrite_uri_attribute(&mut out, content, token, request_host);
            out.push_str(ending);
        } else {
            out.push_str(line);
        }
    }
    out
}

fn split_line_ending(line: &str) -> (&str, &str) {
    let without_lf = line.strip_suffix('\n').unwrap_or(line);
    let content = without_lf.strip_suffix('\r').unwrap_or(without_lf);
    (content, &line[content.len()..])
}

/// Rewrites the value of the `URI` attribute (not `SERVER-URI` or any other name ending in
/// `URI`) of one tag line.
fn rewrite_uri_attribute(out: &mut String, line: &str, token: &TokenParam, host: Option<&str>) {
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
pub fn with_token(uri: &str, token: &TokenParam, request_host: Option<&str>) -> String {
    let mut out = String::with_capacity(uri.len() + token.pair.len() + 1);
    push_uri(&mut out, uri, token, request_host);
    out
}

/// Appends `uri` with the token added to its query (replacing a token already there), or
/// unchanged when it points elsewhere.
fn push_uri(out: &mut String, uri: &str, token: &TokenParam, host: Option<&str>) {
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

fn is_served_here(uri: &str, host: Option<&str>) -> bool {
    let authority_and_rest = if let Some(rest) = uri.strip_prefix("//") {
        rest
    } else if let Some(scheme_end) = scheme_end(uri) {
        let scheme = &uri[..scheme_end];
        let Some(rest) = uri[scheme_end + 1..].strip_prefix("//") else {
            // `data:`, `skd:` and other non-hierarchical schemes.
            return false;
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return false;
        }
        rest
    } else {
        // A relative reference or an absolute path: resolved against this edge.
        return true;
    };
    let authority_end = authority_and_rest
        .find(['/', '?', '#'])
        .unwrap_or(authority_and_rest.len());
    let authority = &authority_and_rest[..authority_end];
    host.is_some_and(|host| authority.eq_ignore_ascii_case(host))
}

/// The index of the `:` that ends a URI scheme, if `uri` starts with one.
fn scheme_end(uri: &str) -> Option<usize> {
    let colon = uri.find(':')?;
    let scheme = &uri[..colon];
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    // A colon after a `/` belongs to a path, not a scheme.
    (valid && !uri[..colon].contains('/')).then_some(colon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenParam {
        TokenParam::new("token", "NDJ8MTg5Mz+/Q==")
    }

    const T: &str = "token=NDJ8MTg5Mz%2B%2FQ%3D%3D";

    #[test]
    fn media_playlist_segments_get_the_token() {
        let input = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n42-3.ts\n#EXTINF:2.000,\n42-4.ts?hls_ctx=ab12\n";
        let expected = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n42-3.ts?{T}\n#EXTINF:2.000,\n42-4.ts?hls_ctx=ab12&{T}\n");
        assert_eq!(rewrite(input, &token(), None), expected);
    }

    #[test]
    fn master_playlist_variants_and_renditions() {
        let input = "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/42.m3u8\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aud\"\r\n/live/42.m3u8?hls_ctx=x1\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"42-iframes.m3u8\"\r\n";
        let expected = format!("#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/42.m3u8?{T}\"\r\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aud\"\r\n/live/42.m3u8?hls_ctx=x1&{T}\r\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"42-iframes.m3u8?{T}\"\r\n");
        assert_eq!(rewrite(input, &token(), None), expected);
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
            let out = rewrite(&format!("{line}\n"), &token(), None);
            assert!(out.contains(&format!("?{T}\"")), "{line} -> {out}");
            assert_eq!(out.matches(T).count(), 1, "{out}");
        }
    }

    #[test]
    fn key_without_uri_and_other_uri_like_names_are_untouched() {
        let input = "#EXT-X-KEY:METHOD=NONE\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"https://steer.example/x\"\n#EXT-X-DATERANGE:ID=\"a\",X-URI=\"keep\"\n";
        assert_eq!(rewrite(input, &token(), None), input);
    }

    #[test]
    fn other_hosts_and_schemes_are_untouched() {
        let input = "https://cdn.other.example/live/42-1.ts\n//cdn.other.example/42-2.ts\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://key42\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"data:text/plain;base64,AAAA\"\n";
        assert_eq!(rewrite(input, &token(), Some("edge.example")), input);
    }

    #[test]
    fn absolute_uris_on_this_host_are_rewritten() {
        let input = "http://EDGE.example:8080/live/42-1.ts\n";
        let out = rewrite(input, &token(), Some("edge.example:8080"));
        assert_eq!(out, format!("http://EDGE.example:8080/live/42-1.ts?{T}\n"));
    }

    #[test]
    fn an_existing_token_is_replaced_not_duplicated() {
        let input = "42-1.ts?token=old&hls_ctx=z#frag\n";
        assert_eq!(
            rewrite(input, &token(), None),
            format!("42-1.ts?hls_ctx=z&{T}#frag\n")
        );
    }

    #[test]
    fn tags_blank_lines_and_missing_final_newline_are_kept() {
        let input = "#EXTM3U\n\n#EXTINF:2,\n42-1.ts";
        assert_eq!(
            rewrite(input, &token(), None),
            format!("#EXTM3U\n\n#EXTINF:2,\n42-1.ts?{T}")
        );
    }

    #[test]
    fn quoted_commas_do_not_split_attributes() {
        let input = "#EXT-X-MEDIA:TYPE=SUBTITLES,NAME=\"a,URI=x\",URI=\"subs.m3u8\"\n";
        let out = rewrite(input, &token(), None);
        assert!(out.contains(&format!("URI=\"subs.m3u8?{T}\"")), "{out}");
        assert_eq!(out.matches(T).count(), 1);
    }

    #[test]
    fn url_safe_tokens_need_no_encoding() {
        let param = TokenParam::new("token", "NDJ8MTg5-_");
        assert_eq!(rewrite("a.ts\n", &param, None), "a.ts?token=NDJ8MTg5-_\n");
    }
}
