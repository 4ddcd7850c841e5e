-- Billing: one Stripe customer per user, subscriptions as Stripe reports them, and every
-- webhook event applied once. The tier is no longer stored: a user is Pro while any of their
-- subscriptions grants it (pro_until in the future), which past_due does only until its period
-- ends.
ALTER TABLE users DROP COLUMN tier;
ALTER TABLE users ADD COLUMN stripe_customer_id TEXT UNIQUE;

CREATE TABLE subscriptions (
    id                   TEXT PRIMARY KEY,          -- Stripe's sub_…
    user_id              UUID REFERENCES users (id) ON DELETE CASCADE,
    customer_id          TEXT NOT NULL,
    status               TEXT NOT NULL,
    price_id             TEXT,
    current_period_end   TIMESTAMPTZ,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT false,
    -- Pro while now < pro_until (far future for active and trialing).
    pro_until            TIMESTAMPTZ,
    -- `created` of the newest Stripe event applied; older events never overwrite newer state.
    event_created        BIGINT NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX subscriptions_user ON subscriptions (user_id, pro_until);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    created     BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
