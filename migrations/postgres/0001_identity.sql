-- Identity: users, one-time codes, sessions, and the per-day prompt counter.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    mobile_number TEXT NOT NULL UNIQUE,
    name          TEXT,
    password_hash TEXT,
    tier          TEXT NOT NULL DEFAULT 'basic' CHECK (tier IN ('basic', 'pro')),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- The live one-time code per user and purpose; a new code replaces the old one.
CREATE TABLE otps (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('login', 'reset')),
    code_hash   BYTEA NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    consumed_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, purpose)
);

-- When codes were sent, for the cooldown and the hourly cap; rows older than an hour are pruned.
CREATE TABLE otp_sends (
    id        UUID PRIMARY KEY,
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX otp_sends_user_issued ON otp_sends (user_id, issued_at);

-- Every issued token is a session (its id is the token's jti); also the sign-in history.
CREATE TABLE sessions (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method       TEXT NOT NULL CHECK (method IN ('otp', 'password', 'reset', 'password_change')),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, id DESC);

-- Prompts taken per user per UTC day (the quota's single source).
CREATE TABLE daily_usage (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day     DATE NOT NULL,
    used    INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (user_id, day)
);
