//! `Idempotency-Key`: the first answer to a request carrying one is stored (status and body)
//! for at least `payments.idempotency_ttl_s` and replayed for the same key and user; the
//! same key with a different request is 422.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use livegate_core::db::idempotency::{self, Stored};

use crate::error::ApiError;
use crate::state::AppState;

/// The header.
pub const HEADER: &str = "idempotency-key";
/// The header set on a replayed answer.
pub const REPLAYED: &str = "idempotency-replayed";
/// Longest key accepted.
pub const MAX_KEY: usize = 255;

/// The key of a request: 1 to 255 visible ASCII characters.
pub fn key(headers: &HeaderMap) -> Result<String, ApiError> {
    let field = "Idempotency-Key";
    let value = headers
        .get(HEADER)
        .ok_or_else(|| ApiError::invalid(field, "this route needs an Idempotency-Key header"))?;
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=MAX_KEY).contains(&key.len()))
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("must be 1 to {MAX_KEY} visible ASCII characters"),
            )
        })?;
    Ok(key.to_owned())
}

/// What identifies a request for its key: route and body.
pub fn request_hash(route: &str, body: &Bytes) -> String {
    let mut hash = Sha256::new();
    hash.update(route.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

/// The stored answer for a key, or the 422 for a key reused with another request.
pub fn replay(stored: &Stored, request_hash: &str) -> Result<Response, ApiError> {
    if stored.request_hash != request_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
        .field("Idempotency-Key"));
    }
    let status = u16::try_from(stored.status)
        .ok()
        .and_then(|status| StatusCode::from_u16(status).ok())
        .ok_or_else(ApiError::internal)?;
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        stored.body.clone(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(response)
}

/// The stored answer for `user_id`'s `key`, if one is still kept.
pub async fn lookup(
    state: &AppState,
    user_id: i64,
    key: &str,
    now_ms: i64,
) -> Result<Option<Stored>, ApiError> {
    Ok(idempotency::get(state.db(), user_id, key, not_before(state, now_ms)).await?)
}

/// The oldest creation time a kept answer may have.
pub fn not_before(state: &AppState, now_ms: i64) -> i64 {
    let ttl_ms = i64::try_from(
        state
            .config()
            .payments
            .idempotency_ttl_s
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX);
    now_ms.saturating_sub(ttl_ms)
}
