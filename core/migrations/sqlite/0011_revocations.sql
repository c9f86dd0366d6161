-- Room revocations ("refuse the room's play tokens expiring at or before T"), kept so that
-- they outlive the process that made them: the edges learn them from the bus, whose
-- in-process form forgets them on a restart, and the room API publishes the ones still in
-- force again when it starts.
CREATE TABLE room_revocations (
    room_id            INTEGER NOT NULL PRIMARY KEY,
    tokens_expiring_by INTEGER NOT NULL
);
