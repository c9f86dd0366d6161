-- The recorder's durable job table: one row per recorded file, whichever input (a bus job from
-- the hooks, the start-up scan or the directory watcher) saw it first. The row carries enough
-- to resume after a crash at any step: the remuxed file, the multipart upload id and how many
-- parts are stored, the object key (derived from room, stream and start time, so a retry
-- overwrites instead of duplicating).
CREATE TABLE recording_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source_hash     TEXT    NOT NULL UNIQUE,
    source_path     TEXT    NOT NULL,
    room_id         INTEGER NOT NULL,
    stream_id       INTEGER NULL,
    origin_kind     TEXT    NOT NULL,
    started_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT    NULL,
    lease_until     INTEGER NULL,
    work_path       TEXT    NULL,
    object_key      TEXT    NULL,
    upload_id       TEXT    NULL,
    part_size       INTEGER NULL,
    parts_done      INTEGER NOT NULL DEFAULT 0,
    size_bytes      INTEGER NULL,
    checksum        TEXT    NULL,
    object_url      TEXT    NULL,
    error           TEXT    NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX recording_jobs_due ON recording_jobs (state, next_attempt_at);
CREATE INDEX recording_jobs_stream ON recording_jobs (stream_id);
