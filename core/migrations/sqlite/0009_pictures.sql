-- Pictures of recordings and rooms. A recording's poster (one JPEG of its MP4, stored beside
-- the object) is kept with its job; a room's cover is its live snapshot (one keyframe pulled
-- from the origin every few seconds while it is live) and the poster of its newest recording,
-- which the room API shows as the room's cover.
ALTER TABLE recording_jobs ADD COLUMN poster_url TEXT NULL;

CREATE TABLE room_covers (
    room_id      INTEGER PRIMARY KEY,
    snapshot_url TEXT    NULL,
    snapshot_at  INTEGER NULL,
    poster_url   TEXT    NULL,
    -- The start of the recording the poster is of: an older recording stored late does not
    -- replace a newer one's poster.
    poster_at    INTEGER NULL,
    updated_at   INTEGER NOT NULL
);
