-- Identity: users, one-time codes, sessions, and the per-day prompt counter.
-- UUIDs are 16-byte BLOBs (sqlx's encoding); timestamps are INTEGER microseconds since the Unix
-- epoch, so they compare and sort numerically.

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    mobile_number TEXT NOT NULL UNIQUE,
    name          TEXT,
    password_hash TEXT,
    tier          TEXT NOT NULL DEFAULT 'basic' CHECK (tier IN ('basic', 'pro')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- The live one-time code per user and purpose; a new code replaces the old one.
CREATE TABLE otps (
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('login', 'reset')),
    code_hash   BLOB NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER,
    PRIMARY KEY (user_id, purpose)
) STRICT;

-- When codes were sent, for the cooldown and the hourly cap; rows older than an hour are pruned.
CREATE TABLE otp_sends (
    id        BLOB PRIMARY KEY,
    user_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at INTEGER NOT NULL
) STRICT;
CREATE INDEX otp_sends_user_issued ON otp_sends (user_id, issued_at);

-- Every issued token is a session (its id is the token's jti); also the sign-in history.
CREATE TABLE sessions (
    id           BLOB PRIMARY KEY,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method       TEXT NOT NULL CHECK (method IN ('otp', 'password', 'reset', 'password_change')),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    revoked_at   INTEGER,
    ip           TEXT,
    user_agent   TEXT
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id, id DESC);

-- Prompts taken per user per UTC day (the quota's single source). `day` is 'YYYY-MM-DD'.
CREATE TABLE daily_usage (
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day     TEXT NOT NULL,
    used    INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (user_id, day)
) STRICT;
