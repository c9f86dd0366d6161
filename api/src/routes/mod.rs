//! The one router of the API under `/api/v1`, on the one [`AppState`]. Every resource has its
//! module; new ones (gifts, payments) are merged here the same way. Chat's `/ws` sits beside
//! `/api/v1`; `chat.only` serves chat alone.

pub mod admin;
pub mod gifts;
pub mod orders;
pub mod payments;
pub mod play;
pub mod rooms;
pub mod sessions;
pub mod users;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::chat;
use crate::error::{method_not_allowed, no_route};
use crate::metrics::track;
use crate::state::AppState;

/// The API routes.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/users", post(users::register))
        .route("/users/me", get(users::me))
        .route("/sessions", post(sessions::login).delete(sessions::logout))
        .route("/sessions/refresh", post(sessions::refresh))
        .route("/rooms", post(rooms::manage::create).get(rooms::read::list))
        .route(
            "/rooms/{id}",
            get(rooms::read::get)
                .patch(rooms::manage::patch)
                .delete(rooms::manage::disable),
        )
        .route(
            "/rooms/{id}/stream-key/rotate",
            post(rooms::manage::rotate_key),
        )
        .route("/rooms/{id}/kill", post(rooms::manage::kill))
        .route("/rooms/{id}/streams", get(rooms::read::streams))
        .route("/rooms/{id}/cover", get(rooms::cover::get))
        .route("/rooms/{id}/play-token", get(play::play_token))
        .merge(payment_routes())
        .merge(admin::routes());
    let chat_config = &state.config().chat;
    let api = if chat_config.only { Router::new() } else { api };
    let api = if chat_config.enabled {
        api.route("/rooms/{id}/messages", get(chat::history::list))
            .route("/rooms/{id}/presence", get(chat::presence::get))
            .route(
                "/rooms/{id}/moderators/{user_id}",
                put(chat::moderation::add_moderator).delete(chat::moderation::remove_moderator),
            )
            .route("/rooms/{id}/mutes", post(chat::moderation::mute))
            .route(
                "/rooms/{id}/mutes/{user_id}",
                delete(chat::moderation::unmute),
            )
            .route("/rooms/{id}/bans", post(chat::moderation::ban))
            .route(
                "/rooms/{id}/bans/{user_id}",
                delete(chat::moderation::unban),
            )
            .route(
                "/rooms/{id}/chat/slow-mode",
                put(chat::moderation::slow_mode),
            )
            .route(
                "/rooms/{id}/chat/messages/{offset}/delete",
                post(chat::moderation::delete_message),
            )
            .route("/rooms/{id}/chat/clear", post(chat::moderation::clear))
    } else {
        api
    };
    let max_body = state.config().server.max_body_bytes;
    let root = if chat_config.enabled {
        Router::new().route("/ws", get(chat::upgrade::upgrade))
    } else {
        Router::new()
    };
    let root = if chat_config.only {
        root
    } else {
        root.merge(crate::web::router(&state.config().rooms))
    };
    root.nest("/api/v1", api)
        .fallback(no_route)
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .layer(middleware::from_fn(no_store))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Gifts, orders and the payment provider's callbacks.
fn payment_routes() -> Router<AppState> {
    Router::new()
        .route("/gifts", get(gifts::list).post(gifts::create))
        .route("/gifts/{id}", axum::routing::patch(gifts::patch))
        .route("/rooms/{id}/gifts", post(orders::buy))
        .route("/users/me/orders", get(orders::mine))
        .route("/admin/orders", get(orders::list))
        .route("/admin/orders/{id}/expire", post(orders::expire))
        .route("/rooms/{id}/leaderboard", get(payments::board))
        .route("/payments/callback", post(payments::callback))
        .route("/openapi.json", get(crate::openapi::serve))
}

/// Answers carry tokens and keys: no cache keeps them. The console's pages and assets say
/// how they may be cached themselves.
async fn no_store(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
