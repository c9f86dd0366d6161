-- Initial schema: the design's tables plus what the hooks service needs.
-- Times are unix milliseconds (BIGINT) so that both backends store them alike.

CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT,
    username      VARCHAR(64)  NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role          VARCHAR(16)  NOT NULL DEFAULT 'viewer',
    created_at    BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY users_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE rooms (
    id                    BIGINT        NOT NULL AUTO_INCREMENT,
    owner_id              BIGINT        NOT NULL,
    title                 VARCHAR(255)  NOT NULL DEFAULT '',
    -- Keys are compared in the service (constant time), never in SQL; a binary collation
    -- makes uniqueness case-sensitive, as on SQLite.
    stream_key            VARCHAR(128)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    stream_key_expires_at BIGINT        NULL,
    publish_allow_cidrs   VARCHAR(1024) NULL,
    is_live               BOOLEAN       NOT NULL DEFAULT FALSE,
    disabled              BOOLEAN       NOT NULL DEFAULT FALSE,
    viewers_count         BIGINT        NOT NULL DEFAULT 0,
    created_at            BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY rooms_stream_key (stream_key),
    KEY rooms_owner_id (owner_id),
    CONSTRAINT rooms_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE streams (
    id                BIGINT        NOT NULL AUTO_INCREMENT,
    room_id           BIGINT        NOT NULL,
    start_at          BIGINT        NOT NULL,
    stop_at           BIGINT        NULL,
    record_url        VARCHAR(2048) NULL,
    origin_kind       VARCHAR(16)   NOT NULL,
    origin_server_id  VARCHAR(128)  NOT NULL,
    origin_service_id VARCHAR(64)   NULL,
    origin_client_id  VARCHAR(128)  NULL,
    origin_stream_id  VARCHAR(128)  NULL,
    publisher_ip      VARCHAR(64)   NULL,
    created_at        BIGINT        NOT NULL,
    -- At most one open stream per room, enforced by the database as well as by the code.
    open_room_id      BIGINT AS (CASE WHEN stop_at IS NULL THEN room_id END) STORED,
    PRIMARY KEY (id),
    UNIQUE KEY streams_one_open_per_room (open_room_id),
    KEY streams_room_start (room_id, start_at),
    KEY streams_origin_open (origin_server_id, stop_at, origin_service_id),
    CONSTRAINT streams_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE messages (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    room_id    BIGINT       NOT NULL,
    user_id    BIGINT       NOT NULL,
    type       VARCHAR(16)  NOT NULL,
    content    TEXT         NOT NULL,
    created_at BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY messages_room_id (room_id, id),
    KEY messages_user_id (user_id),
    CONSTRAINT messages_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id),
    CONSTRAINT messages_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE gifts (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    name       VARCHAR(64)  NOT NULL,
    price      BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY gifts_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE orders (
    id         BIGINT      NOT NULL AUTO_INCREMENT,
    user_id    BIGINT      NOT NULL,
    room_id    BIGINT      NOT NULL,
    gift_id    BIGINT      NOT NULL,
    amount     BIGINT      NOT NULL,
    status     VARCHAR(16) NOT NULL,
    created_at BIGINT      NOT NULL,
    PRIMARY KEY (id),
    KEY orders_user_id (user_id, created_at),
    KEY orders_room_id (room_id, created_at),
    KEY orders_gift_id (gift_id),
    CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT orders_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id),
    CONSTRAINT orders_gift_fk FOREIGN KEY (gift_id) REFERENCES gifts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
