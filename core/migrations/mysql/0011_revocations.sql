-- Room revocations ("refuse the room's play tokens expiring at or before T"), kept so that
-- they outlive the process that made them: the edges learn them from the bus, whose
-- in-process form forgets them on a restart, and the room API publishes the ones still in
-- force again when it starts.
CREATE TABLE room_revocations (
    room_id            BIGINT NOT NULL,
    tokens_expiring_by BIGINT NOT NULL,
    PRIMARY KEY (room_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
