//! Cache keys: the path and only the query parameters that select different content at the
//! origin (`cache.key_query_params`).
//!
//! Any other parameter is dropped from the key *and* from the origin request. Keeping it in the
//! key would let one valid token make the shield fetch, and keep, a copy per made-up query
//! (`?x=1`, `?x=2`, …); sending it to the origin while leaving it out of the key would store an
//! answer to a request other than the one its key names. So a cached request carries exactly
//! the parameters of its key, written the same way in both.

use percent_encoding::percent_decode_str;

/// `cache.key_query_params` by default: the LL-HLS delivery directives (rfc8216bis §6.2.5),
/// which ask the origin for a later playlist (`_HLS_msn`, `_HLS_part`: a blocking reload) or a
/// delta update of it (`_HLS_skip`).
pub const DEFAULT_KEY_QUERY_PARAMS: [&str; 3] = ["_HLS_msn", "_HLS_part", "_HLS_skip"];

/// The query parameters a cached request keeps, in its key and on its way to the origin.
#[derive(Debug, Clone)]
pub struct KeyParams {
    names: Vec<String>,
}

impl KeyParams {
    /// Keeps `names` (in this order), never `token_param`: the configuration refuses a list
    /// naming the token, and this keeps the token out of every key whatever the caller passes.
    pub fn new(names: &[String], token_param: &str) -> KeyParams {
        KeyParams {
            names: names
                .iter()
                .filter(|name| name.as_str() != token_param)
                .cloned()
                .collect(),
        }
    }

    /// The parameters of `query` that are kept, in one spelling for every way a viewer may
    /// write them: each kept name once, with its first value as the viewer wrote it (so the
    /// origin cannot be asked for one value and the answer kept under another), in the
    /// configured order (so `?_HLS_part=1&_HLS_msn=5` and `?_HLS_msn=5&_HLS_part=1` are one
    /// key). A name is matched percent-decoded, as the origin reads it, and written as
    /// configured. `None` when nothing is kept.
    pub fn select(&self, query: Option<&str>) -> Option<String> {
        let query = query.filter(|q| !q.is_empty())?;
        if self.names.is_empty() {
            return None;
        }
        let mut values: Vec<Option<Option<&str>>> = vec![None; self.names.len()];
        for pair in query.split('&') {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            let name = percent_decode_str(name).decode_utf8_lossy();
            if let Some(at) = self.names.iter().position(|kept| *kept == name) {
                values[at].get_or_insert(value);
            }
        }
        let mut selected = String::new();
        for (name, value) in self.names.iter().zip(values) {
            let Some(value) = value else { continue };
            if !selected.is_empty() {
                selected.push('&');
            }
            selected.push_str(name);
            if let Some(value) = value {
                selected.push('=');
                selected.push_str(value);
            }
        }
        (!selected.is_empty()).then_some(selected)
    }
}

/// Whether `name` can be a kept parameter: RFC 3986 unreserved characters only, so that it is
/// written in a key and an origin request exactly as configured, without percent-encoding.
pub fn is_plain_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The cache key for a request: its path and `kept_query` (from [`KeyParams::select`]), under
/// the viewer's `Host` when the origin is told it.
pub fn key(host: Option<&str>, path: &str, kept_query: Option<&str>) -> String {
    let mut key = String::with_capacity(
        host.map_or(0, str::len) + path.len() + kept_query.map_or(0, |q| q.len() + 1),
    );
    if let Some(host) = host {
        key.push_str(&host.to_ascii_lowercase());
    }
    key.push_str(path);
    if let Some(query) = kept_query {
        key.push('?');
        key.push_str(query);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_params() -> KeyParams {
        let names: Vec<String> = DEFAULT_KEY_QUERY_PARAMS.map(String::from).to_vec();
        KeyParams::new(&names, "token")
    }

    #[test]
    fn only_the_listed_parameters_are_kept_in_one_order() {
        let params = default_params();
        assert_eq!(params.select(None), None);
        assert_eq!(params.select(Some("")), None);
        assert_eq!(params.select(Some("token=abc&x=1&hls_ctx=z")), None);
        for query in [
            "_HLS_msn=5&_HLS_part=1",
            "_HLS_part=1&_HLS_msn=5",
            "token=abc&_HLS_part=1&x=2&_HLS_msn=5",
            // Later repeats are ignored: the first value is the one asked for and keyed.
            "_HLS_msn=5&_HLS_part=1&_HLS_msn=6&_HLS_part=9",
            // Names are read decoded, as the origin reads them.
            "%5FHLS_msn=5&_HLS_%70art=1",
        ] {
            assert_eq!(
                params.select(Some(query)).as_deref(),
                Some("_HLS_msn=5&_HLS_part=1"),
                "{query}"
            );
        }
        assert_eq!(
            params.select(Some("_HLS_skip=YES&x=1")).as_deref(),
            Some("_HLS_skip=YES")
        );
        // A value is kept as written; a name without one stays without one.
        assert_eq!(
            params.select(Some("_HLS_skip&_HLS_msn=%35")).as_deref(),
            Some("_HLS_msn=%35&_HLS_skip")
        );
        // Names are case-sensitive, as in the HLS specification.
        assert_eq!(params.select(Some("_hls_msn=5")), None);
    }

    #[test]
    fn the_token_is_never_kept_even_if_listed() {
        let names = vec!["token".to_owned(), "hls_ctx".to_owned()];
        let params = KeyParams::new(&names, "token");
        assert_eq!(
            params.select(Some("token=abc&hls_ctx=z")).as_deref(),
            Some("hls_ctx=z")
        );
        assert_eq!(KeyParams::new(&[], "token").select(Some("a=1")), None);
    }

    #[test]
    fn keys_name_the_path_and_the_kept_query_under_the_host() {
        assert_eq!(key(None, "/live/42.m3u8", None), "/live/42.m3u8");
        assert_eq!(
            key(None, "/live/42.m3u8", Some("_HLS_msn=5&_HLS_part=1")),
            "/live/42.m3u8?_HLS_msn=5&_HLS_part=1"
        );
        assert_eq!(
            key(Some("Edge.Example"), "/live/42-1.ts", None),
            "edge.example/live/42-1.ts"
        );
    }

    #[test]
    fn parameter_names_must_need_no_encoding() {
        for ok in ["_HLS_msn", "hls_ctx", "a.b-c~d"] {
            assert!(is_plain_param_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a=b", "a&b", "%5F", "é"] {
            assert!(!is_plain_param_name(bad), "{bad}");
        }
    }
}
