//! Who is calling: roles, access tokens (JWT), refresh tokens and password hashes, and the
//! extractors that turn an `Authorization: Bearer` header into a [`Caller`].

pub mod jwt;
pub mod password;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Watches; may not own rooms.
    Viewer,
    /// Owns rooms and publishes to them.
    Streamer,
    /// Does anything to anyone's room.
    Admin,
}

impl Role {
    /// The `users.role` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Streamer => "streamer",
            Role::Admin => "admin",
        }
    }

    /// The role a `users.role` value names; an unknown value counts as a viewer, the least
    /// a user may do.
    pub fn from_column(value: &str) -> Role {
        match value {
            "admin" => Role::Admin,
            "streamer" => Role::Streamer,
            _ => Role::Viewer,
        }
    }
}

/// An authenticated caller, from a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The user id.
    pub user_id: i64,
    /// The role the token carries.
    pub role: Role,
}

impl Caller {
    /// Whether the caller may manage a room owned by `owner_id`.
    pub fn may_manage(&self, owner_id: i64) -> bool {
        self.role == Role::Admin || (self.role == Role::Streamer && self.user_id == owner_id)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match MaybeCaller::from_request_parts(parts, state).await? {
            MaybeCaller(Some(caller)) => Ok(caller),
            MaybeCaller(None) => Err(ApiError::unauthorized(
                "invalid_request",
                "this route needs an access token (Authorization: Bearer …)",
            )),
        }
    }
}

/// A caller if the request carries an access token, `None` for an anonymous one. A token
/// that is there but not valid is still refused: a client should learn that it expired.
#[derive(Debug, Clone, Copy)]
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Ok(MaybeCaller(None));
        };
        let token = header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_request",
                "the Authorization header must be `Bearer <access token>`",
            )
        })?;
        let claims = state
            .jwt()
            .verify(token)
            .map_err(|err| ApiError::unauthorized("invalid_token", err.to_string()))?;
        let user_id = claims.sub.parse::<i64>().map_err(|_| {
            ApiError::unauthorized("invalid_token", "the access token is malformed")
        })?;
        Ok(MaybeCaller(Some(Caller {
            user_id,
            role: claims.role,
        })))
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched in any case
/// (`bearer`, `BEARER`): RFC 7235 makes authentication schemes case-insensitive, and some
/// clients send it in lower case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// `bytes` random bytes, lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

/// How a refresh token is stored: its SHA-256, lowercase hex. The token has 256 random bits,
/// so a fast hash suffices.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in [
            "Bearer abc.def",
            "bearer abc.def",
            "BEARER abc.def",
            "bEaReR  abc.def ",
        ] {
            assert_eq!(bearer_token(value), Some("abc.def"), "{value:?}");
        }
        for value in [
            "Basic YTpi",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Bearer: abc",
            "",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
