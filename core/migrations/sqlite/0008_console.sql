-- The operator console: who changed what through the API, and a recording's length.

-- One row per state-changing request of a logged-in user: the actor, the route template as
-- the action, its path parameters as the target, the answer's status.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor_id   INTEGER NOT NULL,
    actor_role TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    room_id    INTEGER NULL,
    status     INTEGER NOT NULL,
    detail     TEXT    NULL
);
CREATE INDEX audit_log_room ON audit_log (room_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);

-- The MP4's media duration, as the remux measured it.
ALTER TABLE recording_jobs ADD COLUMN duration_ms INTEGER NULL;
