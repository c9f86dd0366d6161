//! How rooms and streams are shown, and the cursors of their listings.

use std::borrow::Cow;

use base64::Engine as _;
use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use livegate_core::db::covers::RoomCover;
use livegate_core::db::{Room, RoomCursor, Stream};

use crate::auth::Caller;
use crate::config::RoomsConfig;
use crate::console::storage::RecordingStore;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate;

/// A room as anyone may see it, plus its settings for its owner and admins. Never the key.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Room)]
pub struct RoomView {
    id: i64,
    owner_id: i64,
    title: String,
    /// Whether a publisher is on.
    is_live: bool,
    /// Disabled rooms are seen by their owner and admins only.
    disabled: bool,
    /// Whether only logged-in viewers get play tokens.
    login_required: bool,
    /// Viewers of a live room (0 when it is not live).
    #[schema(minimum = 0)]
    viewer_count: i64,
    /// Users present in the room's chat (in the details of one room only).
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_online: Option<u64>,
    /// Where viewers play HLS (with a play token).
    hls_url: String,
    /// Where viewers play HTTP-FLV; `null` when the edge serves HLS only.
    #[schema(required = true)]
    flv_url: Option<String>,
    /// The room's picture (in the details of one room only): its live snapshot while live,
    /// else its newest recording's poster; `null` when the recorder made none.
    #[serde(skip_serializing_if = "Option::is_none")]
    cover_url: Option<Option<String>>,
    /// Unix milliseconds.
    created_at: i64,
    /// For the owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<RoomSettings>,
}

/// What only the owner and admins see.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomSettings {
    /// Networks publishers may push from; empty: anywhere.
    publish_allow_cidrs: Vec<String>,
    /// When the stream key stops working, unix milliseconds; `null`: never.
    #[schema(required = true)]
    stream_key_expires_at: Option<i64>,
}

/// A room's HLS and FLV URLs on the edge, with `?{param}={token}` when a token is given (a
/// v1 token is URL-safe as it is).
pub fn play_urls(
    config: &RoomsConfig,
    room_id: i64,
    token: Option<(&str, &str)>,
) -> (String, Option<String>) {
    let base = config.edge_base_url.trim_end_matches('/');
    let room = room_id.to_string();
    let query = token
        .map(|(param, token)| format!("?{param}={token}"))
        .unwrap_or_default();
    let hls = format!("{base}{}{query}", config.hls_path.replace("{room}", &room));
    let flv = (!config.flv_path.is_empty())
        .then(|| format!("{base}{}{query}", config.flv_path.replace("{room}", &room)));
    (hls, flv)
}

impl RoomView {
    /// The view of `room` for `caller`.
    pub fn new(room: &Room, state: &AppState, caller: Option<&Caller>) -> Self {
        let config = &state.config().rooms;
        let (hls_url, flv_url) = play_urls(config, room.id, None);
        let settings = caller
            .is_some_and(|caller| caller.may_manage(room.owner_id))
            .then(|| RoomSettings {
                publish_allow_cidrs: validate::cidrs_list(room.publish_allow_cidrs.as_deref()),
                stream_key_expires_at: room.stream_key_expires_at,
            });
        Self {
            id: room.id,
            owner_id: room.owner_id,
            title: room.title.clone(),
            is_live: room.is_live,
            disabled: room.disabled,
            login_required: room.login_required,
            // The edge's count (FLV and HLS viewers through the proxies) or the origin's
            // (plays it reported to the hooks service), whichever sees more.
            viewer_count: if room.is_live {
                room.viewers_count
                    .max(state.edge_viewers().room(room.id))
                    .max(0)
            } else {
                0
            },
            chat_online: None,
            cover_url: None,
            hls_url,
            flv_url,
            created_at: room.created_at,
            settings,
        }
    }

    /// Adds the room's cover, if the recorder made one that `store` (the API's
    /// `[recordings]`) or a public URL can show.
    pub fn with_cover(mut self, cover: Option<&RoomCover>, store: Option<&RecordingStore>) -> Self {
        self.cover_url =
            Some(cover.and_then(|cover| super::cover::link(self.id, cover, self.is_live, store)));
        self
    }

    /// Adds the chat's online count. A live room's viewer count is the larger of the two:
    /// most chatting users also watch, so a sum would count them twice, yet chat sees
    /// viewers the edge may not (HLS players behind a CDN).
    pub fn with_chat_online(mut self, online: u64) -> Self {
        self.chat_online = Some(online);
        if self.is_live {
            self.viewer_count = self
                .viewer_count
                .max(i64::try_from(online).unwrap_or(i64::MAX));
        }
        self
    }
}

/// A publish session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Stream)]
pub struct StreamView {
    id: i64,
    /// Unix milliseconds.
    start_at: i64,
    /// Unix milliseconds; `null` while live.
    #[schema(required = true)]
    stop_at: Option<i64>,
    is_live: bool,
    /// Where the recording is; shown to the owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    record_url: Option<String>,
}

impl StreamView {
    /// The view of `stream`; `private` adds what only the owner may see.
    pub fn new(stream: &Stream, private: bool) -> Self {
        Self {
            id: stream.id,
            start_at: stream.start_at,
            stop_at: stream.stop_at,
            is_live: stream.stop_at.is_none(),
            record_url: if private {
                stream.record_url.clone()
            } else {
                None
            },
        }
    }
}

/// One page of a listing.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// By hand, not derived: a derived generic schema has one name for every item type.
impl<T: ToSchema> PartialSchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("items")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "Pass as `cursor` for the next page; `null` on the last.",
                    )),
            )
            .required("next_cursor")
            .into()
    }
}

impl<T: ToSchema> ToSchema for Page<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}Page", T::name()))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

fn encode(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode(cursor: &str) -> Option<String> {
    if cursor.len() > 64 {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(raw).ok()
}

fn bad_cursor() -> ApiError {
    ApiError::invalid("cursor", "is not a cursor this listing handed out")
}

/// The cursor after `room`.
pub fn room_cursor(room: &Room) -> String {
    encode(&format!("r{}:{}", u8::from(room.is_live), room.id))
}

/// The position a room cursor names.
pub fn parse_room_cursor(cursor: &str) -> Result<RoomCursor, ApiError> {
    let text = decode(cursor).ok_or_else(bad_cursor)?;
    let (live, id) = text
        .strip_prefix('r')
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(bad_cursor)?;
    let is_live = match live {
        "1" => true,
        "0" => false,
        _ => return Err(bad_cursor()),
    };
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(bad_cursor)?;
    Ok(RoomCursor { is_live, id })
}

/// The cursor after `stream`.
pub fn stream_cursor(stream: &Stream) -> String {
    encode(&format!("s{}", stream.id))
}

/// The stream id a stream cursor names.
pub fn parse_stream_cursor(cursor: &str) -> Result<i64, ApiError> {
    decode(cursor)
        .and_then(|text| text.strip_prefix('s').and_then(|id| id.parse::<i64>().ok()))
        .filter(|id| *id > 0)
        .ok_or_else(bad_cursor)
}

/// Page size from `limit`: 1 to 100, default 20.
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(20),
        Some(limit @ 1..=100) => Ok(limit),
        Some(_) => Err(ApiError::invalid("limit", "must be between 1 and 100")),
    }
}
