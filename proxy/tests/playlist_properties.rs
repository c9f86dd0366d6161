//! Property tests of playlist rewriting: structure is preserved and every URI line served by
//! this edge carries the token exactly once.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use livegate_proxy::playlist::{rewrite, EdgeNames, RewriteLimits, TokenParam};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("#EXTM3U".to_owned()),
        "#EXTINF:[0-9]\\.[0-9]{3},".prop_map(|s| s),
        "#EXT-X-[A-Z-]{1,12}:[A-Z0-9=,\"-]{0,20}".prop_map(|s| s),
        "[a-z0-9][a-z0-9/_-]{0,15}\\.(ts|m4s|m3u8)(\\?[a-z]{1,4}=[a-z0-9]{1,4})?".prop_map(|s| s),
        Just(String::new()),
    ]
}

const LIMITS: RewriteLimits = RewriteLimits {
    max_output_bytes: 1 << 24,
    max_line_bytes: 1 << 16,
};

fn edge() -> EdgeNames {
    EdgeNames::new(&["edge.example".to_owned()])
}

/// URIs built from the pieces browsers treat specially: slashes and backslashes in any order,
/// schemes with and without slashes, tabs and newlines that the URL standard strips.
fn tricky_uri() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(""),
        Just("/"),
        Just("//"),
        Just("/\\"),
        Just("\\\\"),
        Just("\\/"),
        Just("\\"),
        Just("http:"),
        Just("https:"),
        Just("http://"),
        Just("HTTP:\\\\"),
        Just("https:/\\"),
        Just("data:"),
        Just("skd://"),
        Just(" "),
        Just("\t"),
    ];
    let host = prop_oneof![
        Just(""),
        Just("edge.example"),
        Just("EDGE.example"),
        Just("evil.example"),
        Just("edge.example:8080"),
        Just("edge.example.evil.example"),
        Just("evil.example@edge.example"),
        Just("edge.example@evil.example"),
    ];
    let noise = prop_oneof![Just(""), Just("\t"), Just("\r"), Just("/"), Just("\\")];
    (prefix, noise.clone(), host, noise, "[a-z0-9./-]{0,12}")
        .prop_map(|(p, n1, h, n2, rest)| format!("{p}{n1}{h}{n2}{rest}"))
}

proptest! {
    #[test]
    fn uris_a_browser_sends_to_another_host_never_get_the_token(uri in prop_oneof![tricky_uri(), "[ -~\t]{1,24}"]) {
        prop_assume!(!uri.trim().is_empty() && !uri.trim_start().starts_with('#') && !uri.contains('\n'));
        let base = url::Url::parse("http://edge.example/live/42.m3u8").unwrap();
        let elsewhere = match base.join(uri.trim()) {
            Ok(resolved) => {
                !matches!(resolved.scheme(), "http" | "https")
                    || resolved.host_str() != Some("edge.example")
                    || resolved.port().is_some()
            }
            // Unparseable: a player cannot fetch it from anywhere.
            Err(_) => true,
        };
        let input = format!("{uri}\n");
        let output = rewrite(&input, &TokenParam::new("token", "T0KEN"), &edge(), LIMITS).unwrap();
        if elsewhere {
            prop_assert_eq!(output, input);
        }
    }

    #[test]
    fn uri_lines_get_one_token_and_nothing_else_changes(lines in prop::collection::vec(line(), 0..40), crlf in any::<bool>()) {
        let ending = if crlf { "\r\n" } else { "\n" };
        let input: String = lines.iter().map(|l| format!("{l}{ending}")).collect();
        let token = TokenParam::new("token", "NDJ8MTg5MzQ1NjAwMHw-_");
        let output = rewrite(&input, &token, &edge(), LIMITS).unwrap();
        let out_lines: Vec<&str> = output.split(ending).collect();
        let in_lines: Vec<&str> = input.split(ending).collect();
        prop_assert_eq!(out_lines.len(), in_lines.len());
        for (before, after) in in_lines.iter().zip(&out_lines) {
            if before.is_empty() || before.starts_with('#') {
                prop_assert_eq!(before, after);
            } else {
                prop_assert_eq!(after.matches("token=NDJ8MTg5MzQ1NjAwMHw-_").count(), 1);
                let path = before.split('?').next().unwrap();
                prop_assert!(after.starts_with(path));
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), token in "[A-Za-z0-9+/=_-]{0,80}") {
        let _ = rewrite(&text, &TokenParam::new("token", &token), &edge(), LIMITS);
    }
}
