//! `POST /api/v1/users` (register) and `GET /api/v1/users/me`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use livegate_core::db::{now_ms, users, User};

use crate::auth::{Caller, Role};
use crate::client::ClientAddr;
use crate::error::{ApiError, Json};
use crate::state::AppState;
use crate::validate;

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// User id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// `viewer`, `streamer` or `admin`.
    pub role: Role,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            username: user.username.clone(),
            role: Role::from_column(&user.role),
            created_at: user.created_at,
        }
    }
}

/// The registration body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// 3 to 32 of `a-z`, `0-9`, `_`, `.`, `-`, starting with a letter or digit
    /// ([`validate::username`]).
    #[schema(min_length = 3, max_length = 32, pattern = r"^[a-z0-9][a-z0-9_.-]*$")]
    username: String,
    /// 8 to 256 characters ([`validate::password`]).
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    /// `viewer` (default) or `streamer`; `admin` only when an admin registers someone.
    #[serde(default)]
    role: Option<Role>,
}

/// Creates a user; 201 with the user. Anyone may register as a viewer or streamer while
/// `auth.open_registration` is on; an admin may register anyone, admins included.
pub async fn register(
    State(state): State<AppState>,
    caller: crate::auth::MaybeCaller,
    addr: ClientAddr,
    Json(body): Json<Register>,
) -> Result<(StatusCode, axum::Json<UserView>), ApiError> {
    let by_admin = caller.0.is_some_and(|c| c.role == Role::Admin);
    let auth = &state.config().auth;
    if !by_admin && !auth.open_registration {
        return Err(ApiError::forbidden("registration is closed; ask an admin"));
    }
    // Each registration costs a password hash: one address must not be able to make the
    // service spend its CPU on a flood of them.
    let limit = auth.registrations_per_address_per_hour;
    if !by_admin && limit > 0 {
        let key = format!("register:addr:{}", addr.0);
        let within = state
            .bus()
            .rate_limit(&key, limit, Duration::from_secs(3600))
            .await?;
        if !within {
            return Err(ApiError::rate_limited(
                "too many registrations from this address; try again later",
            ));
        }
    }
    let role = body.role.unwrap_or(Role::Viewer);
    if role == Role::Admin && !by_admin {
        return Err(ApiError::forbidden("only an admin may create an admin").field("role"));
    }
    validate::username(&body.username).map_err(|m| ApiError::invalid("username", m))?;
    validate::password(&body.password).map_err(|m| ApiError::invalid("password", m))?;
    let user = create_user(&state, &body.username, body.password, role).await?;
    tracing::info!(
        user.id = user.id,
        user.role = role.as_str(),
        "user registered"
    );
    Ok((StatusCode::CREATED, axum::Json(UserView::from(&user))))
}

/// Hashes the password and stores the user; 409 when the name is taken.
pub(crate) async fn create_user(
    state: &AppState,
    username: &str,
    password: String,
    role: Role,
) -> Result<User, ApiError> {
    let hash = state.passwords().hash(password).await.map_err(|err| {
        tracing::error!(error = %err, "password hashing failed");
        ApiError::internal()
    })?;
    let now = now_ms();
    match users::create(state.db(), username, &hash, role.as_str(), now).await {
        Ok(id) => Ok(User {
            id,
            username: username.to_owned(),
            password_hash: hash,
            role: role.as_str().to_owned(),
            created_at: now,
        }),
        Err(err) if users::is_duplicate(&err) => {
            Err(ApiError::conflict("that username is taken").field("username"))
        }
        Err(err) => Err(err.into()),
    }
}

/// The caller's account.
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<UserView>, ApiError> {
    let user = users::get(state.db(), caller.user_id)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_token", "the token's user no longer exists")
        })?;
    Ok(axum::Json(UserView::from(&user)))
}
