-- Chatrooms, their messages, and the durable job queue that produces AI replies.

CREATE TABLE chatrooms (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    last_message_at TIMESTAMPTZ,
    -- The list's sort key: last_message_at, or created_at before the first message.
    activity_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX chatrooms_user_activity ON chatrooms (user_id, activity_at DESC, id DESC);

CREATE TABLE messages (
    id            UUID PRIMARY KEY,
    chatroom_id   UUID NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('user', 'model')),
    content       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'streaming', 'completed', 'failed')),
    error_code    TEXT,
    error_message TEXT,
    -- On a reply: the UTC day whose prompt it took; cleared when the prompt is given back.
    quota_day     DATE,
    finish_reason TEXT,
    model_version TEXT,
    prompt_tokens INTEGER,
    output_tokens INTEGER,
    total_tokens  INTEGER,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_chatroom ON messages (chatroom_id, id DESC);

-- One row per reply to produce. Claimed with a lease (locked_until, lock_token) that the
-- worker renews; a lapsed lease makes the job claimable again. Deleted when the reply ends.
CREATE TABLE jobs (
    id           UUID PRIMARY KEY,
    reply_id     UUID NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    chatroom_id  UUID NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_at       TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ,
    lock_token   UUID,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_chatroom ON jobs (chatroom_id, id);
CREATE INDEX jobs_run_at ON jobs (run_at);
-- Replies within a chatroom are produced strictly in order: at most one claimed job per room.
CREATE UNIQUE INDEX jobs_one_claimed_per_chatroom ON jobs (chatroom_id) WHERE lock_token IS NOT NULL;
