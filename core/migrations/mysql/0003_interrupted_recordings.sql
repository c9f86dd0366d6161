-- Recordings an origin left unfinished: a ZLMediaKit that dies mid-stream leaves its current
-- MP4 as a hidden dotfile in the stream's record directory and never reports it. When a
-- restart, a reconciliation or lost keepalives close a stream that was recording, its
-- directory is noted here for a recorder to find and judge the leftover file.
CREATE TABLE interrupted_recordings (
    id               BIGINT        NOT NULL AUTO_INCREMENT,
    stream_id        BIGINT        NOT NULL,
    room_id          BIGINT        NOT NULL,
    origin_kind      VARCHAR(16)   NOT NULL,
    origin_server_id VARCHAR(128)  NOT NULL,
    -- The stream's record directory as the origin named it (may be relative to the origin's
    -- own working directory when its configuration is).
    directory        VARCHAR(2048) NOT NULL,
    -- Why the stream was closed: `origin_restarted`, `origin_dropped` or `origin_silent`.
    reason           VARCHAR(32)   NOT NULL,
    created_at       BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY interrupted_recordings_stream (stream_id),
    KEY interrupted_recordings_created (created_at),
    CONSTRAINT interrupted_recordings_stream_fk FOREIGN KEY (stream_id) REFERENCES streams (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
