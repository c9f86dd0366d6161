-- Room chat moderation: moderators a room's owner grants, mutes and bans, per-room slow mode.

CREATE TABLE room_moderators (
    room_id    INTEGER NOT NULL REFERENCES rooms (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- kind is 'mute' or 'ban'; until_ms NULL = until lifted.
CREATE TABLE chat_sanctions (
    room_id    INTEGER NOT NULL REFERENCES rooms (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL,
    until_ms   INTEGER NULL,
    created_by INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, kind)
);

CREATE TABLE chat_settings (
    room_id     INTEGER NOT NULL PRIMARY KEY REFERENCES rooms (id),
    slow_mode_s INTEGER NOT NULL DEFAULT 0
);
