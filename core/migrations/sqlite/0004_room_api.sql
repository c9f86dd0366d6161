-- The room API: rooms that only logged-in viewers may watch, and the refresh tokens of login
-- sessions. A refresh token is stored as the SHA-256 of its value; each refresh replaces it by
-- a new one of the same family, and presenting a replaced one again revokes the family.
ALTER TABLE rooms ADD COLUMN login_required BOOLEAN NOT NULL DEFAULT FALSE;
-- Room listings: live rooms first, newest first.
CREATE INDEX rooms_live_id ON rooms (is_live, id);

CREATE TABLE refresh_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    family      TEXT    NOT NULL,
    token_hash  TEXT    NOT NULL UNIQUE,
    expires_at  INTEGER NOT NULL,
    replaced_at INTEGER NULL,
    revoked_at  INTEGER NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
