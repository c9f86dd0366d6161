//! Property tests of playlist rewriting: structure is preserved and every URI line served by
//! this edge carries the token exactly once.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use livegate_proxy::playlist::{rewrite, TokenParam};
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

proptest! {
    #[test]
    fn uri_lines_get_one_token_and_nothing_else_changes(lines in prop::collection::vec(line(), 0..40), crlf in any::<bool>()) {
        let ending = if crlf { "\r\n" } else { "\n" };
        let input: String = lines.iter().map(|l| format!("{l}{ending}")).collect();
        let token = TokenParam::new("token", "NDJ8MTg5MzQ1NjAwMHw-_");
        let output = rewrite(&input, &token, Some("edge.example"));
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
        let _ = rewrite(&text, &TokenParam::new("token", &token), None);
    }
}
