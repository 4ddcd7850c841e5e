//! `BillingRepo`, once for both databases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::sql::{Connection, FromRecord, Lock, Record, Scalar, sql};
use crate::billing::model::{
    StripeEvent, Subscription, SubscriptionStatus, SubscriptionUpdate, merge,
};
use crate::billing::repo::{Applied, BillingRepo};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

impl FromRecord for Subscription {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.get("id")?,
            user_id: row.get::<Option<Uuid>>("user_id")?.map(UserId),
            customer_id: row.get("customer_id")?,
            status: SubscriptionStatus::parse(&row.get::<String>("status")?),
            price_id: row.get("price_id")?,
            current_period_end: row.get("current_period_end")?,
            cancel_at_period_end: row.get("cancel_at_period_end")?,
            pro_until: row.get("pro_until")?,
            event_created: row.get("event_created")?,
        })
    }
}

macro_rules! columns {
    () => {
        "id, user_id, customer_id, status, price_id, current_period_end, cancel_at_period_end, \
         pro_until, event_created"
    };
}

/// The user with this id, if there is one.
async fn existing_user(on: &mut dyn Connection, id: UserId) -> Result<Option<UserId>, StoreError> {
    let found: Option<Scalar<Uuid>> = sql("SELECT id AS value FROM users WHERE id = $1")
        .bind(id.0)
        .fetch_optional(on)
        .await?;
    Ok(found.map(|Scalar(id)| UserId(id)))
}

impl SqlStore {
    /// Applies one subscription update inside `tx`; the merged subscription.
    async fn apply(
        &self,
        tx: &mut dyn Connection,
        update: &SubscriptionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let mut user = None;
        if let Some(named) = update.user {
            user = existing_user(&mut *tx, named).await?;
        }
        if user.is_none()
            && let Some(customer) = &update.customer
        {
            let owner: Option<Scalar<Uuid>> =
                sql("SELECT id AS value FROM users WHERE stripe_customer_id = $1")
                    .bind(customer.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            user = owner.map(|Scalar(id)| UserId(id));
        }
        let existing: Option<Subscription> = sql(format!(
            concat!("SELECT ", columns!(), " FROM subscriptions WHERE id = $1{}"),
            self.locked(Lock::Update)
        ))
        .bind(update.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(merged) = merge(existing.as_ref(), update, user) else {
            return Ok(None);
        };
        sql(
            "INSERT INTO subscriptions (id, user_id, customer_id, status, price_id, \
             current_period_end, cancel_at_period_end, pro_until, event_created, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, status = EXCLUDED.status, \
             price_id = EXCLUDED.price_id, current_period_end = EXCLUDED.current_period_end, \
             cancel_at_period_end = EXCLUDED.cancel_at_period_end, pro_until = EXCLUDED.pro_until, \
             event_created = EXCLUDED.event_created, updated_at = EXCLUDED.updated_at",
        )
        .bind(merged.id.as_str())
        .bind(merged.user_id.map(|u| u.0))
        .bind(merged.customer_id.as_str())
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
}

/// Records `customer` for `user` unless the user has one or the customer belongs to another.
async fn link(tx: &mut dyn Connection, user: UserId, customer: &str) -> Result<(), StoreError> {
    sql(
        "UPDATE users SET stripe_customer_id = $2 WHERE id = $1 AND stripe_customer_id IS NULL \
         AND NOT EXISTS (SELECT 1 FROM users WHERE stripe_customer_id = $2)",
    )
    .bind(user.0)
    .bind(customer)
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl BillingRepo for SqlStore {
    async fn apply_event(
        &self,
        event: &StripeEvent,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.db.begin().await?;
        let recorded = sql(
            "INSERT INTO stripe_events (id, type, created, received_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(event.id.as_str())
        .bind(event.kind.as_str())
        .bind(event.created)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if recorded == 0 {
            return Ok(Applied::Duplicate);
        }
        let mut user = None;
        if let Some((owner, customer)) = &event.customer_link
            && existing_user(&mut *tx, *owner).await?.is_some()
        {
            link(&mut *tx, *owner, customer).await?;
            user = Some(*owner);
        }
        if let Some(update) = &event.update {
            let merged = self.apply(&mut *tx, update, now).await?;
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
        let mut tx = self.db.begin().await?;
        let merged = self.apply(&mut *tx, update, now).await?;
        tx.commit().await?;
        Ok(merged)
    }

    async fn subscription_of(&self, user: UserId) -> Result<Option<Subscription>, StoreError> {
        sql(concat!(
            "SELECT ",
            columns!(),
            " FROM subscriptions WHERE user_id = $1 \
             ORDER BY CASE WHEN status IN ('canceled', 'incomplete_expired') THEN 1 ELSE 0 END, \
             event_created DESC LIMIT 1"
        ))
        .bind(user.0)
        .fetch_optional(&mut *self.db.reads())
        .await
    }

    async fn customer_of(&self, user: UserId) -> Result<Option<String>, StoreError> {
        let customer: Option<Scalar<Option<String>>> =
            sql("SELECT stripe_customer_id AS value FROM users WHERE id = $1")
                .bind(user.0)
                .fetch_optional(&mut *self.db.reads())
                .await?;
        Ok(customer.and_then(|Scalar(c)| c))
    }

    async fn link_customer(&self, user: UserId, customer: &str) -> Result<String, StoreError> {
        let stored: Option<Scalar<Option<String>>> = sql(
            "UPDATE users SET stripe_customer_id = COALESCE(stripe_customer_id, $2) WHERE id = $1 \
             RETURNING stripe_customer_id AS value",
        )
        .bind(user.0)
        .bind(customer)
        .fetch_optional(&mut *self.db.writes())
        .await?;
        stored.and_then(|Scalar(c)| c).ok_or(StoreError::NotFound)
    }
}
