//! Login sessions: `POST /api/v1/sessions` (log in), `POST /api/v1/sessions/refresh`
//! (rotate the refresh token) and `DELETE /api/v1/sessions` (log out).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use livegate_core::db::sessions::{self, NewRefreshToken};
use livegate_core::db::{now_ms, users, User};

use crate::auth::{random_hex, random_token, token_hash, Role};
use crate::client::ClientAddr;
use crate::error::{ApiError, Json};
use crate::metrics::LoginLabels;
use crate::routes::users::UserView;
use crate::state::AppState;
use crate::unix_now;
use crate::validate;

/// Random bytes in a refresh token.
const REFRESH_TOKEN_BYTES: usize = 32;

/// The login body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    /// At most 256 characters.
    #[schema(max_length = 256)]
    password: String,
}

/// The refresh and logout body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// As a login or the last refresh handed it out.
    #[schema(min_length = 1, max_length = 128)]
    refresh_token: String,
}

/// A new pair of tokens.
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionView {
    /// A JWT for `Authorization: Bearer`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(pattern = "^Bearer$")]
    token_type: &'static str,
    /// Seconds the access token is valid.
    expires_in: u64,
    refresh_token: String,
    /// Seconds the refresh token is valid.
    refresh_expires_in: u64,
    user: UserView,
}

fn rate_keys(username: &str, addr: ClientAddr) -> (String, String) {
    (
        format!("login-failures:user:{username}"),
        format!("login-failures:addr:{}", addr.0),
    )
}

fn count_login(state: &AppState, outcome: &'static str) {
    state
        .metrics()
        .logins
        .get_or_create(&LoginLabels { outcome })
        .inc();
}

/// Logs in. Unknown usernames and wrong passwords get the same answer after the same work
/// (a dummy hash is verified for an unknown name). Failures count against the username and
/// the client address; past either limit, logins are refused without checking.
pub async fn login(
    State(state): State<AppState>,
    addr: ClientAddr,
    Json(body): Json<Login>,
) -> Result<(StatusCode, axum::Json<SessionView>), ApiError> {
    if !(1..=64).contains(&body.username.chars().count()) {
        return Err(ApiError::invalid("username", "must be 1 to 64 characters"));
    }
    if body.password.chars().count() > validate::PASSWORD_MAX {
        return Err(ApiError::invalid(
            "password",
            format!("must be at most {} characters", validate::PASSWORD_MAX),
        ));
    }
    let auth = &state.config().auth;
    let window = Duration::from_secs(auth.failed_login_window_s);
    let (user_key, addr_key) = rate_keys(&body.username, addr);
    let limits = [
        (&user_key, auth.failed_logins_per_username),
        (&addr_key, auth.failed_logins_per_address),
    ];
    for (key, limit) in limits {
        if limit > 0 && state.bus().rate_hits(key, window).await? >= u64::from(limit) {
            count_login(&state, "rate_limited");
            return Err(ApiError::rate_limited(
                "too many failed logins; try again later",
            ));
        }
    }
    let user = users::by_username(state.db(), &body.username).await?;
    let matched = state
        .passwords()
        .verify(
            body.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "password verification failed");
            ApiError::internal()
        })?;
    let (true, Some(user)) = (matched, user) else {
        for (key, limit) in limits {
            if limit > 0 {
                state.bus().rate_limit(key, limit, window).await?;
            }
        }
        count_login(&state, "bad_credentials");
        tracing::info!(client.addr = %addr.0, "login refused");
        return Err(ApiError::unauthorized(
            "invalid_request",
            "wrong username or password",
        ));
    };
    let session = open_session(&state, &user, &random_hex(16)).await?;
    count_login(&state, "ok");
    tracing::info!(user.id = user.id, "logged in");
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// Stores a new refresh token of `family` for `user` and issues both tokens.
async fn open_session(
    state: &AppState,
    user: &User,
    family: &str,
) -> Result<SessionView, ApiError> {
    let refresh = random_token(REFRESH_TOKEN_BYTES);
    let auth = &state.config().auth;
    let now = now_ms();
    let ttl_ms = i64::try_from(auth.refresh_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    sessions::insert(
        state.db(),
        &NewRefreshToken {
            user_id: user.id,
            family,
            token_hash: &token_hash(&refresh),
            expires_at: now.saturating_add(ttl_ms),
        },
        now,
    )
    .await?;
    session_view(state, user, refresh)
}

fn session_view(state: &AppState, user: &User, refresh: String) -> Result<SessionView, ApiError> {
    let role = Role::from_column(&user.role);
    let access = state
        .jwt()
        .issue(user.id, role, unix_now())
        .map_err(|err| {
            tracing::error!(error = %err, "could not sign an access token");
            ApiError::internal()
        })?;
    Ok(SessionView {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.jwt().ttl_s(),
        refresh_token: refresh,
        refresh_expires_in: state.config().auth.refresh_ttl_s,
        user: UserView::from(user),
    })
}

fn invalid_grant(message: &str) -> ApiError {
    ApiError::unauthorized("invalid_token", message.to_owned()).field("refresh_token")
}

/// Replaces a refresh token by a new one of its family, with a new access token. A token
/// that was already replaced means two parties hold it: the whole family is revoked, so the
/// thief's current token dies with the owner's.
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshBody>,
) -> Result<axum::Json<SessionView>, ApiError> {
    if !(1..=128).contains(&body.refresh_token.chars().count()) {
        return Err(ApiError::invalid(
            "refresh_token",
            "must be 1 to 128 characters",
        ));
    }
    let hash = token_hash(&body.refresh_token);
    let now = now_ms();
    let Some(token) = sessions::by_hash(state.db(), &hash).await? else {
        return Err(invalid_grant("the refresh token is not valid"));
    };
    if token.revoked_at.is_some() {
        return Err(invalid_grant("the refresh token has been revoked"));
    }
    if token.replaced_at.is_some() {
        return Err(reused(&state, &token.family, token.user_id, now).await);
    }
    if token.expires_at < now {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let mut tx = state.db().begin().await?;
    if !sessions::mark_replaced(&mut tx, token.id, now).await? {
        // A concurrent refresh with the same token got there first.
        tx.rollback().await?;
        return Err(reused(&state, &token.family, token.user_id, now).await);
    }
    let Some(user) = users::get(&mut tx, token.user_id).await? else {
        return Err(invalid_grant("the refresh token's user no longer exists"));
    };
    let refresh = random_token(REFRESH_TOKEN_BYTES);
    let ttl_ms =
        i64::try_from(state.config().auth.refresh_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    sessions::insert(
        &mut tx,
        &NewRefreshToken {
            user_id: user.id,
            family: &token.family,
            token_hash: &token_hash(&refresh),
            expires_at: now.saturating_add(ttl_ms),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(session_view(&state, &user, refresh)?))
}

async fn reused(state: &AppState, family: &str, user_id: i64, now: i64) -> ApiError {
    match sessions::revoke_family(state.db(), family, now).await {
        Ok(revoked) => {
            tracing::warn!(
                user.id = user_id,
                revoked,
                "a replaced refresh token was presented again; its session is revoked"
            );
            invalid_grant("the refresh token was already used; the session has been revoked")
        }
        Err(err) => err.into(),
    }
}

/// Logs out: revokes the session the refresh token belongs to. Answers 204 whether or not
/// the token was known, so that logging out twice is not an error.
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    if !(1..=128).contains(&body.refresh_token.chars().count()) {
        return Err(ApiError::invalid(
            "refresh_token",
            "must be 1 to 128 characters",
        ));
    }
    if let Some(token) = sessions::by_hash(state.db(), &token_hash(&body.refresh_token)).await? {
        sessions::revoke_family(state.db(), &token.family, now_ms()).await?;
        tracing::info!(user.id = token.user_id, "logged out");
    }
    Ok(StatusCode::NO_CONTENT)
}
