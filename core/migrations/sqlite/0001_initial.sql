-- Initial schema: the design's tables plus what the hooks service needs.
-- Times are unix milliseconds so that both backends store them alike.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'viewer',
    created_at    INTEGER NOT NULL
);

CREATE TABLE rooms (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id              INTEGER NOT NULL REFERENCES users (id),
    title                 TEXT    NOT NULL DEFAULT '',
    stream_key            TEXT    NOT NULL UNIQUE,
    stream_key_expires_at INTEGER NULL,
    publish_allow_cidrs   TEXT    NULL,
    is_live               BOOLEAN NOT NULL DEFAULT FALSE,
    disabled              BOOLEAN NOT NULL DEFAULT FALSE,
    viewers_count         INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL
);
CREATE INDEX rooms_owner_id ON rooms (owner_id);

CREATE TABLE streams (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id           INTEGER NOT NULL REFERENCES rooms (id),
    start_at          INTEGER NOT NULL,
    stop_at           INTEGER NULL,
    record_url        TEXT    NULL,
    origin_kind       TEXT    NOT NULL,
    origin_server_id  TEXT    NOT NULL,
    origin_service_id TEXT    NULL,
    origin_client_id  TEXT    NULL,
    origin_stream_id  TEXT    NULL,
    publisher_ip      TEXT    NULL,
    created_at        INTEGER NOT NULL
);
-- At most one open stream per room, enforced by the database as well as by the code.
CREATE UNIQUE INDEX streams_one_open_per_room ON streams (room_id) WHERE stop_at IS NULL;
CREATE INDEX streams_room_start ON streams (room_id, start_at);
CREATE INDEX streams_origin_open ON streams (origin_server_id, stop_at, origin_service_id);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    INTEGER NOT NULL REFERENCES rooms (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    type       TEXT    NOT NULL,
    content    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_room_id ON messages (room_id, id);
CREATE INDEX messages_user_id ON messages (user_id);

CREATE TABLE gifts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    price      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE orders (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    room_id    INTEGER NOT NULL REFERENCES rooms (id),
    gift_id    INTEGER NOT NULL REFERENCES gifts (id),
    amount     INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX orders_user_id ON orders (user_id, created_at);
CREATE INDEX orders_room_id ON orders (room_id, created_at);
CREATE INDEX orders_gift_id ON orders (gift_id);
