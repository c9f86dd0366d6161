//! Why the server closes a chat connection, as WebSocket close codes (documented in
//! `docs/chat.md`).

/// A reason the server ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The service is shutting down (1001); reconnect to another instance.
    GoingAway,
    /// The token expired while connected (4001); reconnect with a fresh one.
    TokenExpired,
    /// Nothing arrived, not even a pong, for `chat.idle_timeout_ms` (4002).
    Idle,
    /// The user was banned from the room (4003).
    Banned,
    /// The room was disabled (4004).
    RoomDisabled,
    /// The outbound queue passed `chat.max_outbound_bytes`, or a write took longer than
    /// `chat.send_timeout_ms` (4008).
    TooSlow,
    /// The room's history changed under the connection (a new epoch, or messages the
    /// instance could not get back): reconnect with `since` to learn what was lost (4010).
    Resync,
    /// Too many refused sends in a row (4029).
    Abuse,
    /// A binary frame, or text that is not valid protocol JSON (1003).
    Unsupported,
    /// A frame larger than 10 KB (1009).
    TooBig,
    /// A text frame that is not UTF-8 (1007).
    InvalidText,
    /// A frame that breaks the WebSocket protocol, an unmasked one say (1002).
    ProtocolError,
}

impl Close {
    /// The close for a frame the WebSocket layer refused before the chat saw it: one past
    /// the layer's size limit, text that is not UTF-8, a protocol violation. `None` when the
    /// connection itself failed, and nothing can be sent on it any more.
    pub fn for_refused_frame(error: axum::Error) -> Option<Close> {
        use tungstenite::error::ProtocolError;
        match error.into_inner().downcast_ref::<tungstenite::Error>()? {
            tungstenite::Error::Capacity(_) => Some(Close::TooBig),
            tungstenite::Error::Utf8(_) => Some(Close::InvalidText),
            // A client that vanished (a closed tab, a lost network) is gone, not wrong.
            tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
                | ProtocolError::SendAfterClosing
                | ProtocolError::ReceivedAfterClosing,
            ) => None,
            tungstenite::Error::Protocol(_) => Some(Close::ProtocolError),
            _ => None,
        }
    }

    /// The close code.
    pub fn code(self) -> u16 {
        match self {
            Close::GoingAway => 1001,
            Close::Unsupported => 1003,
            Close::TooBig => 1009,
            Close::InvalidText => 1007,
            Close::ProtocolError => 1002,
            Close::TokenExpired => 4001,
            Close::Idle => 4002,
            Close::Banned => 4003,
            Close::RoomDisabled => 4004,
            Close::TooSlow => 4008,
            Close::Resync => 4010,
            Close::Abuse => 4029,
        }
    }

    /// The close reason sent with the code (a label, at most a few words).
    pub fn reason(self) -> &'static str {
        match self {
            Close::GoingAway => "going_away",
            Close::Unsupported => "unsupported_frame",
            Close::TooBig => "frame_too_big",
            Close::InvalidText => "invalid_text",
            Close::ProtocolError => "protocol_error",
            Close::TokenExpired => "token_expired",
            Close::Idle => "idle",
            Close::Banned => "banned",
            Close::RoomDisabled => "room_disabled",
            Close::TooSlow => "too_slow",
            Close::Resync => "resync",
            Close::Abuse => "abuse",
        }
    }
}
