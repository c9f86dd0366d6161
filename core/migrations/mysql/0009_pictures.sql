-- Pictures of recordings and rooms. A recording's poster (one JPEG of its MP4, stored beside
-- the object) is kept with its job; a room's cover is its live snapshot (one keyframe pulled
-- from the origin every few seconds while it is live) and the poster of its newest recording,
-- which the room API shows as the room's cover.
ALTER TABLE recording_jobs ADD COLUMN poster_url VARCHAR(2048) NULL;

CREATE TABLE room_covers (
    room_id      BIGINT        NOT NULL,
    snapshot_url VARCHAR(2048) NULL,
    snapshot_at  BIGINT        NULL,
    poster_url   VARCHAR(2048) NULL,
    -- The start of the recording the poster is of: an older recording stored late does not
    -- replace a newer one's poster.
    poster_at    BIGINT        NULL,
    updated_at   BIGINT        NOT NULL,
    PRIMARY KEY (room_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
