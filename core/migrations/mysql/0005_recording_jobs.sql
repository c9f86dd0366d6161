-- The recorder's durable job table: one row per recorded file, whichever input (a bus job from
-- the hooks, the start-up scan or the directory watcher) saw it first. The row carries enough
-- to resume after a crash at any step: the remuxed file, the multipart upload id and how many
-- parts are stored, the object key (derived from room, stream and start time, so a retry
-- overwrites instead of duplicating).
CREATE TABLE recording_jobs (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    -- sha256 of source_path: a unique index over a 2048-character utf8mb4 column would
    -- exceed InnoDB's key length.
    source_hash     CHAR(64)      NOT NULL,
    source_path     VARCHAR(2048) NOT NULL,
    room_id         BIGINT        NOT NULL,
    stream_id       BIGINT        NULL,
    origin_kind     VARCHAR(16)   NOT NULL,
    -- When the recording started (stream start, or the file's time): part of the object key.
    started_at      BIGINT        NOT NULL,
    -- discovered, remuxing, uploading, uploaded, recorded, cleaned or failed.
    state           VARCHAR(16)   NOT NULL,
    attempts        INT           NOT NULL DEFAULT 0,
    next_attempt_at BIGINT        NOT NULL,
    lease_owner     VARCHAR(128)  NULL,
    lease_until     BIGINT        NULL,
    work_path       VARCHAR(2048) NULL,
    object_key      VARCHAR(1024) NULL,
    upload_id       VARCHAR(1024) NULL,
    part_size       BIGINT        NULL,
    parts_done      INT           NOT NULL DEFAULT 0,
    size_bytes      BIGINT        NULL,
    -- sha256 of the stored object, hex.
    checksum        CHAR(64)      NULL,
    object_url      VARCHAR(2048) NULL,
    error           TEXT          NULL,
    created_at      BIGINT        NOT NULL,
    updated_at      BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY recording_jobs_source (source_hash),
    KEY recording_jobs_due (state, next_attempt_at),
    KEY recording_jobs_stream (stream_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
