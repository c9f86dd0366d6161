-- Recordings an origin left unfinished: a ZLMediaKit that dies mid-stream leaves its current
-- MP4 as a hidden dotfile in the stream's record directory and never reports it. When a
-- restart, a reconciliation or lost keepalives close a stream that was recording, its
-- directory is noted here for a recorder to find and judge the leftover file.
CREATE TABLE interrupted_recordings (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id        INTEGER NOT NULL UNIQUE REFERENCES streams (id),
    room_id          INTEGER NOT NULL,
    origin_kind      TEXT    NOT NULL,
    origin_server_id TEXT    NOT NULL,
    directory        TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX interrupted_recordings_created ON interrupted_recordings (created_at);
