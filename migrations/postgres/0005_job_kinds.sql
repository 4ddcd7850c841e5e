-- The job queue serves every kind of background work, not only replies. `kind` names the
-- handler that runs a job and `payload` (JSON text) its arguments. Jobs that share a `lane`
-- run one at a time, oldest first (a chatroom's replies: `chatroom:<id>`); jobs without a lane
-- run as soon as they are due. A job's `key`, when it has one, names what it is about
-- (`reply:<id>`): at most one queued job per key, and the handle to remove it by. A job goes with
-- the user and the chatroom it belongs to.
ALTER TABLE jobs ADD COLUMN kind TEXT;
ALTER TABLE jobs ADD COLUMN key TEXT UNIQUE;
ALTER TABLE jobs ADD COLUMN payload TEXT;
ALTER TABLE jobs ADD COLUMN lane TEXT;
UPDATE jobs SET kind = 'reply',
    payload = json_build_object('reply_id', reply_id, 'chatroom_id', chatroom_id,
                                'user_id', user_id)::text,
    lane = 'chatroom:' || chatroom_id::text,
    key = 'reply:' || reply_id::text;
ALTER TABLE jobs ALTER COLUMN kind SET NOT NULL;
ALTER TABLE jobs ALTER COLUMN payload SET NOT NULL;
ALTER TABLE jobs ALTER COLUMN chatroom_id DROP NOT NULL;
ALTER TABLE jobs ALTER COLUMN user_id DROP NOT NULL;
DROP INDEX jobs_one_claimed_per_chatroom;
ALTER TABLE jobs DROP COLUMN reply_id;
DROP INDEX jobs_chatroom;
CREATE INDEX jobs_chatroom ON jobs (chatroom_id);
CREATE INDEX jobs_user ON jobs (user_id);
CREATE INDEX jobs_lane ON jobs (lane, id) WHERE lane IS NOT NULL;
-- At most one claimed job per lane (the claim already ensures it; this is the safety net).
CREATE UNIQUE INDEX jobs_one_claimed_per_lane ON jobs (lane) WHERE lock_token IS NOT NULL;
