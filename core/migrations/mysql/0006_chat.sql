-- Room chat moderation: moderators a room's owner grants, mutes and bans, per-room slow mode.

CREATE TABLE room_moderators (
    room_id    BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_moderators_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id),
    CONSTRAINT room_moderators_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- kind is 'mute' or 'ban'; until_ms NULL = until lifted.
CREATE TABLE chat_sanctions (
    room_id    BIGINT      NOT NULL,
    user_id    BIGINT      NOT NULL,
    kind       VARCHAR(8)  NOT NULL,
    until_ms   BIGINT      NULL,
    created_by BIGINT      NOT NULL,
    created_at BIGINT      NOT NULL,
    PRIMARY KEY (room_id, user_id, kind),
    CONSTRAINT chat_sanctions_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id),
    CONSTRAINT chat_sanctions_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE chat_settings (
    room_id     BIGINT NOT NULL,
    slow_mode_s INT    NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id),
    CONSTRAINT chat_settings_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
