//! The per-room gift leaderboard: totals per giver in a bus [`Leaderboard`] (a Redis sorted
//! set), rebuilt from the paid orders by the relay after it relays a room's gifts, and by a
//! reader that finds it missing. Each rebuild is versioned by the number of paid orders it
//! sums, so racing rebuilds leave the newest and a gift is never counted twice.
//!
//! [`Leaderboard`]: livegate_core::bus::Leaderboard

use livegate_core::db::{orders, users};

use crate::error::ApiError;
use crate::state::AppState;

/// The board key of a room and currency.
pub fn board_key(room_id: i64, currency: &str) -> String {
    format!("{room_id}:{currency}")
}

/// Rebuilds the board of `room_id` in `currency` from the database (unless a newer
/// rebuild is already there).
pub async fn rebuild(state: &AppState, room_id: i64, currency: &str) -> Result<(), ApiError> {
    let totals = orders::room_totals(state.db(), room_id, currency).await?;
    let scores: Vec<(String, i64)> = totals
        .by_user
        .into_iter()
        .map(|(user, total)| (user.to_string(), total))
        .collect();
    state
        .bus()
        .gift_board()
        .replace(&board_key(room_id, currency), totals.paid_orders, &scores)
        .await?;
    Ok(())
}

/// The `n` highest totals of `room_id` in `currency`: (user id, username, total).
pub async fn top(
    state: &AppState,
    room_id: i64,
    currency: &str,
    n: usize,
) -> Result<Vec<(i64, String, i64)>, ApiError> {
    let board = state.bus().gift_board();
    let key = board_key(room_id, currency);
    let found = match board.top(&key, n).await? {
        Some(found) => found,
        None => {
            rebuild(state, room_id, currency).await?;
            board.top(&key, n).await?.unwrap_or_default()
        }
    };
    let mut top = Vec::with_capacity(found.len());
    for (member, total) in found {
        let Ok(user_id) = member.parse::<i64>() else {
            continue;
        };
        let username = users::get(state.db(), user_id)
            .await?
            .map(|user| user.username)
            .unwrap_or_default();
        top.push((user_id, username, total));
    }
    Ok(top)
}
