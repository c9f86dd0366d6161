-- The room API: rooms that only logged-in viewers may watch, and the refresh tokens of login
-- sessions. A refresh token is stored as the SHA-256 of its value; each refresh replaces it by
-- a new one of the same family, and presenting a replaced one again revokes the family.
-- Hashes and families are lowercase hex, so the case-insensitive collation is exact.
ALTER TABLE rooms ADD COLUMN login_required BOOLEAN NOT NULL DEFAULT FALSE;
-- Room listings: live rooms first, newest first.
CREATE INDEX rooms_live_id ON rooms (is_live, id);

CREATE TABLE refresh_tokens (
    id          BIGINT      NOT NULL AUTO_INCREMENT,
    user_id     BIGINT      NOT NULL,
    family      VARCHAR(64) CHARACTER SET ascii NOT NULL,
    token_hash  CHAR(64)    CHARACTER SET ascii NOT NULL,
    expires_at  BIGINT      NOT NULL,
    replaced_at BIGINT      NULL,
    revoked_at  BIGINT      NULL,
    created_at  BIGINT      NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY refresh_tokens_hash (token_hash),
    KEY refresh_tokens_family (family),
    KEY refresh_tokens_user (user_id),
    CONSTRAINT refresh_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
