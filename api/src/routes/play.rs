//! `GET /api/v1/rooms/{id}/play-token`: a play token v1 for the edge, with ready play URLs.

use std::time::Duration;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::MaybeCaller;
use crate::client::ClientAddr;
use crate::error::{ApiError, Path};
use crate::routes::rooms::read::{room_id, visible_room};
use crate::routes::rooms::view::play_urls;
use crate::state::AppState;
use crate::unix_now;

/// A play token and where to use it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayToken {
    /// A v1 play token (README.md, "Play tokens v1").
    token: String,
    /// The last unix second at which the edge accepts it.
    expires_at: u64,
    /// Seconds from now.
    expires_in: u64,
    /// The room's HLS URL with the token.
    hls_url: String,
    /// The room's HTTP-FLV URL with the token; `null` when the edge serves HLS only.
    #[schema(required = true)]
    flv_url: Option<String>,
}

/// Mints a token for the room. Anonymous callers get one unless the room requires login;
/// a disabled room gets none; each client address gets a limited number per minute.
pub async fn play_token(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    addr: ClientAddr,
    Path(id): Path<i64>,
) -> Result<axum::Json<PlayToken>, ApiError> {
    let id = room_id(id)?;
    let config = &state.config().play_token;
    if config.per_address_per_minute > 0 {
        let key = format!("play-token:addr:{}", addr.0);
        let within = state
            .bus()
            .rate_limit(&key, config.per_address_per_minute, Duration::from_secs(60))
            .await?;
        if !within {
            return Err(ApiError::rate_limited(
                "too many play tokens for this address; try again in a minute",
            ));
        }
    }
    let room = visible_room(&state, id, caller.as_ref()).await?;
    if room.disabled {
        return Err(ApiError::forbidden("the room is disabled"));
    }
    if room.login_required && caller.is_none() {
        return Err(ApiError::unauthorized(
            "invalid_request",
            "this room requires a logged-in viewer",
        ));
    }
    let room_id = u64::try_from(room.id).map_err(|_| ApiError::internal())?;
    let expires_at = unix_now().saturating_add(config.ttl_s);
    let token = state.play_keys().mint(room_id, expires_at);
    state.metrics().play_tokens.inc();
    let (hls_url, flv_url) = play_urls(
        &state.config().rooms,
        room.id,
        Some((&config.query_param, &token)),
    );
    Ok(axum::Json(PlayToken {
        token,
        expires_at,
        expires_in: config.ttl_s,
        hls_url,
        flv_url,
    }))
}
