-- Chatrooms, their messages, and the durable job queue that produces AI replies.
-- UUIDs are BLOBs, timestamps INTEGER microseconds, days 'YYYY-MM-DD'.

CREATE TABLE chatrooms (
    id              BLOB PRIMARY KEY,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_message_at INTEGER,
    -- The list's sort key: last_message_at, or created_at before the first message.
    activity_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX chatrooms_user_activity ON chatrooms (user_id, activity_at DESC, id DESC);

CREATE TABLE messages (
    id            BLOB PRIMARY KEY,
    chatroom_id   BLOB NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id       BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('user', 'model')),
    content       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'streaming', 'completed', 'failed')),
    error_code    TEXT,
    error_message TEXT,
    -- On a reply: the UTC day whose prompt it took; cleared when the prompt is given back.
    quota_day     TEXT,
    finish_reason TEXT,
    model_version TEXT,
    prompt_tokens INTEGER,
    output_tokens INTEGER,
    total_tokens  INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_chatroom ON messages (chatroom_id, id DESC);

-- One row per reply to produce. Claimed with a lease (locked_until, lock_token) that the
-- worker renews; a lapsed lease makes the job claimable again. Deleted when the reply ends.
CREATE TABLE jobs (
    id           BLOB PRIMARY KEY,
    reply_id     BLOB NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    chatroom_id  BLOB NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL,
    locked_until INTEGER,
    lock_token   BLOB,
    last_error   TEXT,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX jobs_chatroom ON jobs (chatroom_id, id);
CREATE INDEX jobs_run_at ON jobs (run_at);
-- Replies within a chatroom are produced strictly in order: at most one claimed job per room.
CREATE UNIQUE INDEX jobs_one_claimed_per_chatroom ON jobs (chatroom_id) WHERE lock_token IS NOT NULL;
