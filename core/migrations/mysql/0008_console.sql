-- The operator console: who changed what through the API, and a recording's length.

-- One row per state-changing request of a logged-in user: the actor, the route template as
-- the action, its path parameters as the target, the answer's status.
CREATE TABLE audit_log (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    at         BIGINT       NOT NULL,
    actor_id   BIGINT       NOT NULL,
    actor_role VARCHAR(16)  NOT NULL,
    action     VARCHAR(160) NOT NULL,
    target     VARCHAR(255) NOT NULL,
    room_id    BIGINT       NULL,
    status     INT          NOT NULL,
    detail     VARCHAR(512) NULL,
    PRIMARY KEY (id),
    KEY audit_log_room (room_id, id),
    KEY audit_log_actor (actor_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The MP4's media duration, as the remux measured it.
ALTER TABLE recording_jobs ADD COLUMN duration_ms BIGINT NULL;
