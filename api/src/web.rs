//! The console (`/console`, and every `/console/...` path for its client-side routes), the
//! public watch page (`/watch/{room_id}`) and their assets (`/assets/...`), built from `web/`
//! by `build.rs` and embedded in the binary.
//!
//! Pages are revalidated on every load (they name the assets of the build); assets carry a
//! content hash in their names and are cached for a year. Both carry a Content-Security-Policy
//! that allows scripts, styles and API calls from this origin only, and media from the
//! configured edge (`rooms.edge_base_url`).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::Embed;

use crate::config::RoomsConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// The build of `web/` (see `build.rs`).
#[derive(Embed)]
#[folder = "$OUT_DIR/web"]
struct Built;

const PAGE_CACHE: &str = "no-cache";
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// What every page and asset answer carries.
#[derive(Debug)]
struct Headers {
    csp: HeaderValue,
}

/// The page and asset routes.
pub fn router(rooms: &RoomsConfig) -> Router<AppState> {
    let headers = Arc::new(Headers {
        csp: content_security_policy(&rooms.edge_base_url),
    });
    let console = {
        let headers = headers.clone();
        move |request: HeaderMap| {
            let headers = headers.clone();
            async move { page("console.html", &headers, &request) }
        }
    };
    let watch = {
        let headers = headers.clone();
        move |Path(room): Path<String>, request: HeaderMap| {
            let headers = headers.clone();
            async move {
                if !is_room_id(&room) {
                    return ApiError::not_found("room").into_response();
                }
                page("watch.html", &headers, &request)
            }
        }
    };
    let asset = move |Path(file): Path<String>, request: HeaderMap| {
        let headers = headers.clone();
        async move { asset(&file, &headers, &request) }
    };
    Router::new()
        .route("/console", get(console.clone()))
        .route("/console/", get(console.clone()))
        .route("/console/{*route}", get(console))
        .route("/watch/{room}", get(watch))
        .route("/assets/{*file}", get(asset))
}

fn is_room_id(text: &str) -> bool {
    text.parse::<i64>().is_ok_and(|id| id > 0) && !text.starts_with(['+', '0'])
}

/// The policy: this origin for scripts, styles and calls (chat's WebSocket included: `'self'`
/// matches `ws:`/`wss:` of the same host), the edge for media players' requests, `blob:` for
/// Media Source playback and hls.js's worker.
fn content_security_policy(edge_base_url: &str) -> HeaderValue {
    let edge = origin_of(edge_base_url)
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'{edge}; media-src 'self' blob:{edge}; \
         worker-src 'self' blob:; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             media-src 'self' blob:; worker-src 'self' blob:; base-uri 'none'; \
             frame-ancestors 'none'",
        )
    })
}

/// `scheme://host[:port]` of an http(s) URL, when it is plain enough to be a CSP source.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let plain = !authority.is_empty()
        && !authority.contains('@')
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    plain.then(|| format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

fn page(name: &str, headers: &Headers, request: &HeaderMap) -> Response {
    serve(name, PAGE_CACHE, headers, request)
}

fn asset(file: &str, headers: &Headers, request: &HeaderMap) -> Response {
    if file.split('/').any(|part| part.is_empty() || part == "..") {
        return ApiError::not_found("asset").into_response();
    }
    serve(&format!("assets/{file}"), ASSET_CACHE, headers, request)
}

fn serve(path: &str, cache: &'static str, headers: &Headers, request: &HeaderMap) -> Response {
    let Some(file) = Built::get(path) else {
        return ApiError::not_found("asset").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, file.data.into_owned()).into_response()
    };
    let answer = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(file.metadata.mimetype()) {
        answer.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        answer.insert(header::ETAG, value);
    }
    answer.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    answer.insert(header::CONTENT_SECURITY_POLICY, headers.csp.clone());
    answer.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    answer.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    answer.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_edge_origin_only() {
        let csp = content_security_policy("http://Edge.example:8080/base/");
        let text = csp.to_str().unwrap_or_default();
        assert!(
            text.contains("media-src 'self' blob: http://edge.example:8080;"),
            "{text}"
        );
        assert!(
            text.contains("connect-src 'self' http://edge.example:8080;"),
            "{text}"
        );
        assert!(text.contains("script-src 'self';"), "{text}");
    }

    #[test]
    fn an_edge_url_that_is_no_plain_origin_is_left_out() {
        for url in ["ftp://edge", "http://a;b", "http://user@edge", "edge:8080"] {
            assert_eq!(origin_of(url), None, "{url}");
        }
        assert_eq!(
            origin_of("https://[::1]:8443/x").as_deref(),
            Some("https://[::1]:8443")
        );
    }

    #[test]
    fn watch_pages_exist_for_room_ids_only() {
        assert!(is_room_id("42"));
        for text in ["0", "-1", "042", "+4", "x", "", "99999999999999999999"] {
            assert!(!is_room_id(text), "{text}");
        }
    }

    #[test]
    fn the_build_has_both_pages_and_their_assets() {
        for page in ["console.html", "watch.html"] {
            let file = Built::get(page)
                .map(|f| f.data.into_owned())
                .unwrap_or_default();
            let html = String::from_utf8(file).unwrap_or_default();
            let assets: Vec<&str> = html
                .split('"')
                .filter(|part| part.starts_with("/assets/"))
                .collect();
            assert_eq!(assets.len(), 2, "{page} names a stylesheet and a script");
            for asset in assets {
                assert!(
                    Built::get(asset.trim_start_matches('/')).is_some(),
                    "{page} names {asset}, which the build lacks"
                );
            }
        }
    }
}
