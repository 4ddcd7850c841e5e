-- Scenario 7: the SQL that POST /chatroom/{id}/message runs on PostgreSQL (see
-- PgStore::insert_prompt_with_reply_job), as one pgbench transaction over the prepared Pro
-- users' rooms. The same statements and round trips; ids are time-ordered like UUIDv7. The
-- first statement also picks the room (a join on bench_rooms, which the app does not need).
\set i random(1, :rooms)
BEGIN;
SELECT c.id AS room, c.user_id AS owner,
       EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = c.user_id AND s.pro_until > now()) AS pro
  FROM chatrooms c JOIN bench_rooms b ON b.room_id = c.id
 WHERE b.i = :i FOR NO KEY UPDATE OF c \gset
INSERT INTO daily_usage (user_id, day, used) VALUES (:owner, current_date, 1)
  ON CONFLICT (user_id, day) DO UPDATE SET used = daily_usage.used + 1
  WHERE NULL::integer IS NULL OR daily_usage.used < NULL::integer
  RETURNING used;
INSERT INTO messages (id, chatroom_id, user_id, role, content, status, error_code, error_message,
  quota_day, finish_reason, model_version, prompt_tokens, output_tokens, total_tokens, created_at,
  updated_at)
  VALUES (bench_uuid7(), :room, :owner, 'user',
  'What is the airspeed velocity of an unladen swallow?', 'completed', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, now(), now());
INSERT INTO messages (id, chatroom_id, user_id, role, content, status, error_code, error_message,
  quota_day, finish_reason, model_version, prompt_tokens, output_tokens, total_tokens, created_at,
  updated_at)
  VALUES (bench_uuid7(), :room, :owner, 'model', '', 'pending', NULL, NULL, current_date, NULL,
  NULL, NULL, NULL, NULL, now(), now())
  RETURNING id AS reply \gset
UPDATE chatrooms SET last_message_at = now(), activity_at = now() WHERE id = :room;
INSERT INTO jobs (id, kind, payload, lane, user_id, chatroom_id, attempts, run_at, created_at)
  VALUES (bench_uuid7(), 'reply',
  json_build_object('reply_id', CAST(:reply AS uuid), 'chatroom_id', CAST(:room AS uuid),
                    'user_id', CAST(:owner AS uuid))::text,
  'chatroom:' || CAST(:room AS text), :owner, :room, 0, now(), now());
SELECT pg_notify('gemchat_jobs', '');
COMMIT;
