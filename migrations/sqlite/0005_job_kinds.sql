-- The job queue serves every kind of background work, not only replies. `kind` names the
-- handler that runs a job and `payload` (JSON text) its arguments. Jobs that share a `lane`
-- run one at a time, oldest first (a chatroom's replies: `chatroom:<id>`); jobs without a lane
-- run as soon as they are due. A job's `key`, when it has one, names what it is about
-- (`reply:<id>`): at most one queued job per key, and the handle to remove it by. A job goes with
-- the user and the chatroom it belongs to.
-- SQLite cannot drop a referencing column in place: the table is rebuilt.
CREATE TABLE jobs_next (
    id           BLOB PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    lane         TEXT,
    key          TEXT UNIQUE,
    chatroom_id  BLOB REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id      BLOB REFERENCES users (id) ON DELETE CASCADE,
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL,
    locked_until INTEGER,
    lock_token   BLOB,
    last_error   TEXT,
    created_at   INTEGER NOT NULL
) STRICT;
-- Ids in the payload and the lane are written as Rust writes them: hyphenated lower-case hex.
WITH hexed AS (
    SELECT *, lower(hex(reply_id)) AS rh, lower(hex(chatroom_id)) AS ch,
           lower(hex(user_id)) AS uh
    FROM jobs
), ids AS (
    SELECT *,
           substr(rh, 1, 8) || '-' || substr(rh, 9, 4) || '-' || substr(rh, 13, 4) || '-' ||
           substr(rh, 17, 4) || '-' || substr(rh, 21) AS r,
           substr(ch, 1, 8) || '-' || substr(ch, 9, 4) || '-' || substr(ch, 13, 4) || '-' ||
           substr(ch, 17, 4) || '-' || substr(ch, 21) AS c,
           substr(uh, 1, 8) || '-' || substr(uh, 9, 4) || '-' || substr(uh, 13, 4) || '-' ||
           substr(uh, 17, 4) || '-' || substr(uh, 21) AS u
    FROM hexed
)
INSERT INTO jobs_next (id, kind, payload, lane, key, chatroom_id, user_id, attempts, run_at,
                       locked_until, lock_token, last_error, created_at)
SELECT id, 'reply', json_object('reply_id', r, 'chatroom_id', c, 'user_id', u),
       'chatroom:' || c, 'reply:' || r, chatroom_id, user_id, attempts, run_at, locked_until,
       lock_token, last_error, created_at
FROM ids;
DROP TABLE jobs;
ALTER TABLE jobs_next RENAME TO jobs;
CREATE INDEX jobs_chatroom ON jobs (chatroom_id);
CREATE INDEX jobs_user ON jobs (user_id);
CREATE INDEX jobs_run_at ON jobs (run_at);
CREATE INDEX jobs_lane ON jobs (lane, id) WHERE lane IS NOT NULL;
-- At most one claimed job per lane (the claim already ensures it; this is the safety net).
CREATE UNIQUE INDEX jobs_one_claimed_per_lane ON jobs (lane) WHERE lock_token IS NOT NULL;
