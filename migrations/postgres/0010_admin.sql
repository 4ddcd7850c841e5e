-- Administration: the admin role (granted on the command line only), accounts an admin
-- disabled or gave Pro, the audit log of admin changes, and the indexes the admin statistics
-- read (each a range or a partial index, so they stay fast with millions of messages).

ALTER TABLE users ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT FALSE;
-- Set while the account is disabled: no token works, no sign-in succeeds.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
-- A complimentary Pro plan, whatever Stripe says.
ALTER TABLE users ADD COLUMN pro_override BOOLEAN NOT NULL DEFAULT FALSE;

-- Who changed what, written in the transaction of the change. No foreign keys: the log
-- outlives the accounts it names. `admin_id` is null for a change made on the command line.
CREATE TABLE admin_audit (
    id       UUID PRIMARY KEY,
    admin_id UUID,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    at       TIMESTAMPTZ NOT NULL
);

-- Complimentary Pro plans, for the count of Pro users.
CREATE INDEX users_pro_override ON users (id) WHERE pro_override;
-- Today's prompts and active users.
CREATE INDEX daily_usage_day ON daily_usage (day);
-- Today's tokens: the replies created since midnight.
CREATE INDEX messages_replies_created ON messages (created_at) WHERE role = 'model';
-- Replies in flight, and failed replies newest first.
CREATE INDEX messages_in_flight ON messages (status) WHERE status IN ('pending', 'streaming');
CREATE INDEX messages_failed ON messages (id) WHERE status = 'failed';
