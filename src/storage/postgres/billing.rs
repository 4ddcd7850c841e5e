//! `BillingRepo` on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use crate::billing::model::{
    StripeEvent, Subscription, SubscriptionStatus, SubscriptionUpdate, merge,
};
use crate::billing::repo::{Applied, BillingRepo};
use crate::storage::StoreError;
use crate::users::model::UserId;

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: String,
    user_id: Option<Uuid>,
    customer_id: String,
    status: String,
    price_id: Option<String>,
    current_period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
    pro_until: Option<DateTime<Utc>>,
    event_created: i64,
}

impl From<SubscriptionRow> for Subscription {
    fn from(row: SubscriptionRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id.map(UserId),
            customer_id: row.customer_id,
            status: SubscriptionStatus::parse(&row.status),
            price_id: row.price_id,
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end,
            pro_until: row.pro_until,
            event_created: row.event_created,
        }
    }
}

macro_rules! columns {
    () => {
        "id, user_id, customer_id, status, price_id, current_period_end, cancel_at_period_end, \
         pro_until, event_created"
    };
}

/// Applies one subscription update inside `tx`; the merged subscription.
async fn apply(
    tx: &mut sqlx::PgConnection,
    update: &SubscriptionUpdate,
    now: DateTime<Utc>,
) -> Result<Option<Subscription>, StoreError> {
    let mut user = None;
    if let Some(named) = update.user {
        let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind(named.0)
            .fetch_optional(&mut *tx)
            .await?;
        user = exists.map(UserId);
    }
    if user.is_none()
        && let Some(customer) = &update.customer
    {
        let owner: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM users WHERE stripe_customer_id = $1")
                .bind(customer)
                .fetch_optional(&mut *tx)
                .await?;
        user = owner.map(UserId);
    }
    let existing: Option<SubscriptionRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM subscriptions WHERE id = $1 FOR UPDATE"
    ))
    .bind(&update.id)
    .fetch_optional(&mut *tx)
    .await?;
    let existing = existing.map(Subscription::from);
    let Some(merged) = merge(existing.as_ref(), update, user) else {
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO subscriptions (id, user_id, customer_id, status, price_id, current_period_end, \
         cancel_at_period_end, pro_until, event_created, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, status = EXCLUDED.status, \
         price_id = EXCLUDED.price_id, current_period_end = EXCLUDED.current_period_end, \
         cancel_at_period_end = EXCLUDED.cancel_at_period_end, pro_until = EXCLUDED.pro_until, \
         event_created = EXCLUDED.event_created, updated_at = EXCLUDED.updated_at",
    )
    .bind(&merged.id)
    .bind(merged.user_id.map(|u| u.0))
    .bind(&merged.customer_id)
    .bind(merged.status.as_str())
    .bind(merged.price_id.as_deref())
    .bind(merged.current_period_end)
    .bind(merged.cancel_at_period_end)
    .bind(merged.pro_until)
    .bind(merged.event_created)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if let Some(owner) = merged.user_id {
        link(tx, owner, &merged.customer_id).await?;
    }
    Ok(Some(merged))
}

/// Records `customer` for `user` unless the user has one or the customer belongs to another.
async fn link(tx: &mut sqlx::PgConnection, user: UserId, customer: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE users SET stripe_customer_id = $2 WHERE id = $1 AND stripe_customer_id IS NULL \
         AND NOT EXISTS (SELECT 1 FROM users WHERE stripe_customer_id = $2)",
    )
    .bind(user.0)
    .bind(customer)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[async_trait]
impl BillingRepo for PgStore {
    async fn apply_event(
        &self,
        event: &StripeEvent,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.pool.begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO stripe_events (id, type, created, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(event.created)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 0 {
            return Ok(Applied::Duplicate);
        }
        let mut user = None;
        if let Some((owner, customer)) = &event.customer_link {
            let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                .bind(owner.0)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                link(&mut tx, *owner, customer).await?;
                user = Some(*owner);
            }
        }
        if let Some(update) = &event.update {
            let merged = apply(&mut tx, update, now).await?;
            user = merged.and_then(|s| s.user_id).or(user);
        }
        tx.commit().await?;
        Ok(Applied::Applied { user })
    }

    async fn apply_update(
        &self,
        update: &SubscriptionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let merged = apply(&mut tx, update, now).await?;
        tx.commit().await?;
        Ok(merged)
    }

    async fn subscription_of(&self, user: UserId) -> Result<Option<Subscription>, StoreError> {
        let row: Option<SubscriptionRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM subscriptions WHERE user_id = $1 \
             ORDER BY CASE WHEN status IN ('canceled', 'incomplete_expired') THEN 1 ELSE 0 END, \
             event_created DESC LIMIT 1"
        ))
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Subscription::from))
    }

    async fn customer_of(&self, user: UserId) -> Result<Option<String>, StoreError> {
        let customer: Option<Option<String>> =
            sqlx::query_scalar("SELECT stripe_customer_id FROM users WHERE id = $1")
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(customer.flatten())
    }

    async fn link_customer(&self, user: UserId, customer: &str) -> Result<String, StoreError> {
        let stored: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE users SET stripe_customer_id = COALESCE(stripe_customer_id, $2) WHERE id = $1 \
             RETURNING stripe_customer_id",
        )
        .bind(user.0)
        .bind(customer)
        .fetch_optional(&self.pool)
        .await?;
        stored.flatten().ok_or(StoreError::NotFound)
    }
}
