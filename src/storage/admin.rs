//! `AdminRepo`, once for both databases. Every statistic reads an index range or a partial
//! index (migration 0010), so none scans the messages.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::messages::{Stored, message_columns};
use super::sql::{Connection, FromRecord, Lock, Record, Scalar, Statement, sql, to_u32};
use super::users::user_columns;
use crate::admin::model::{
    Action, AdminUser, AuditEntry, QueueStats, ReplyStats, Stats, TokenStats, UserChange,
    UserQuery, UserStats,
};
use crate::admin::repo::AdminRepo;
use crate::messages::model::Message;
use crate::storage::error::StoreError;
use crate::users::model::{MobileNumber, User, UserId};

impl FromRecord for AdminUser {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            user: User::from_record(row)?,
            pro_override: row.get("pro_override")?,
            used_today: to_u32(row.get("used_today")?),
            last_seen_at: row.get("last_seen_at")?,
        })
    }
}

impl FromRecord for AuditEntry {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.get("id")?,
            admin_id: row.get("admin_id")?,
            action: row.get("action")?,
            target: row.get("target")?,
            at: row.get("at")?,
        })
    }
}

/// A user's switches as stored.
struct Switches {
    id: Uuid,
    is_admin: bool,
    disabled: bool,
    pro_override: bool,
}

impl FromRecord for Switches {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.get("id")?,
            is_admin: row.get("is_admin")?,
            disabled: row.get("disabled")?,
            pro_override: row.get("pro_override")?,
        })
    }
}

/// Counts read together.
struct Counts(i64, i64, i64);

impl FromRecord for Counts {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self(row.get("a")?, row.get("b")?, row.get("c")?))
    }
}

/// The queue's depth and its oldest due job.
struct Queue(i64, Option<DateTime<Utc>>);

impl FromRecord for Queue {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self(row.get("depth")?, row.get("oldest")?))
    }
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Users as an admin sees them: `$1` limit, `$2` now, `$3` today, `$4` the id cursor or one
/// id (per `where_id`), `$5` a LIKE pattern or null.
fn admin_users(where_id: &str) -> String {
    format!(
        "SELECT {}, u.pro_override, COALESCE(d.used, 0) AS used_today, \
         (SELECT MAX(s.last_used_at) FROM sessions s WHERE s.user_id = u.id) AS last_seen_at \
         FROM users u LEFT JOIN daily_usage d ON d.user_id = u.id AND d.day = $3 \
         WHERE ($4 IS NULL OR u.id {where_id} $4) AND ($5 IS NULL \
         OR lower(u.mobile_number) LIKE $5 ESCAPE '\\' \
         OR lower(COALESCE(u.name, '')) LIKE $5 ESCAPE '\\') \
         ORDER BY u.id DESC LIMIT $1",
        user_columns!()
    )
}

/// `text` as a LIKE pattern matching it anywhere, its wildcards taken literally.
fn contains(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

async fn write_audit(
    on: &mut dyn Connection,
    admin: Option<UserId>,
    action: Action,
    target: UserId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sql("INSERT INTO admin_audit (id, admin_id, action, target, at) VALUES ($1, $2, $3, $4, $5)")
        .bind(Uuid::now_v7())
        .bind(admin.map(|a| a.0))
        .bind(action.as_str())
        .bind(target.0.to_string())
        .bind(at)
        .execute(on)
        .await?;
    Ok(())
}

impl SqlStore {
    fn switches(&self, by: &str) -> Statement {
        sql(format!(
            "SELECT id, is_admin, disabled_at IS NOT NULL AS disabled, pro_override \
             FROM users WHERE {by} = $1{}",
            self.locked(Lock::Update)
        ))
    }
}

#[async_trait]
impl AdminRepo for SqlStore {
    async fn set_admin(
        &self,
        mobile: &MobileNumber,
        admin: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some(user) = self
            .switches("mobile_number")
            .bind(mobile.as_str())
            .fetch_optional::<Switches>(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        if user.is_admin == admin {
            return Ok(Some(false));
        }
        sql("UPDATE users SET is_admin = $2, updated_at = $3 WHERE id = $1")
            .bind(user.id)
            .bind(admin)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let action = if admin {
            Action::GrantAdmin
        } else {
            Action::RevokeAdmin
        };
        write_audit(&mut *tx, None, action, UserId(user.id), now).await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    async fn is_admin(&self, user: UserId) -> Result<bool, StoreError> {
        let found: Option<Scalar<bool>> =
            sql("SELECT (is_admin AND disabled_at IS NULL) AS value FROM users WHERE id = $1")
                .bind(user.0)
                .fetch_optional(&mut *self.db.reads())
                .await?;
        Ok(found.is_some_and(|Scalar(admin)| admin))
    }

    async fn users(
        &self,
        query: &UserQuery,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Vec<AdminUser>, StoreError> {
        sql(admin_users("<"))
            .bind(query.limit)
            .bind(now)
            .bind(today)
            .bind(query.before.map(|b| b.0))
            .bind(query.text.as_deref().map(contains))
            .fetch_all(&mut *self.db.reads())
            .await
    }

    async fn change_user(
        &self,
        admin: UserId,
        target: UserId,
        change: UserChange,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Option<(AdminUser, Vec<Action>)>, StoreError> {
        let mut tx = self.db.begin().await?;
        let Some(current) = self
            .switches("id")
            .bind(target.0)
            .fetch_optional::<Switches>(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let mut actions = Vec::new();
        if let Some(disabled) = change.disabled.filter(|d| *d != current.disabled) {
            sql("UPDATE users SET disabled_at = $2, updated_at = $3 WHERE id = $1")
                .bind(target.0)
                .bind(disabled.then_some(now))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if disabled {
                // Every token of the account stops working (the caller tells every process).
                sql(
                    "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(target.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            actions.push(if disabled {
                Action::Disable
            } else {
                Action::Enable
            });
        }
        if let Some(comp) = change.pro_override.filter(|p| *p != current.pro_override) {
            sql("UPDATE users SET pro_override = $2, updated_at = $3 WHERE id = $1")
                .bind(target.0)
                .bind(comp)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            actions.push(if comp {
                Action::CompPro
            } else {
                Action::EndCompPro
            });
        }
        for action in &actions {
            write_audit(&mut *tx, Some(admin), *action, target, now).await?;
        }
        let user: AdminUser = sql(admin_users("="))
            .bind(1_u32)
            .bind(now)
            .bind(today)
            .bind(Some(target.0))
            .bind(None::<String>)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((user, actions)))
    }

    async fn stats(&self, now: DateTime<Utc>, today: NaiveDate) -> Result<Stats, StoreError> {
        let mut reads = self.db.reads();
        let Scalar(total): Scalar<i64> = sql("SELECT COUNT(*) AS value FROM users")
            .fetch_one(&mut *reads)
            .await?;
        let Scalar(pro): Scalar<i64> = sql(
            "SELECT COUNT(*) AS value FROM (SELECT id FROM users WHERE pro_override \
             UNION SELECT user_id FROM subscriptions WHERE pro_until > $1 \
             AND user_id IS NOT NULL) p",
        )
        .bind(now)
        .fetch_one(&mut *reads)
        .await?;
        let Counts(active, prompts, _) = sql(
            "SELECT COALESCE(SUM(CASE WHEN used > 0 THEN 1 ELSE 0 END), 0) AS a, \
             COALESCE(SUM(used), 0) AS b, 0 AS c FROM daily_usage WHERE day = $1",
        )
        .bind(today)
        .fetch_one(&mut *reads)
        .await?;
        let midnight = today.and_time(NaiveTime::MIN).and_utc();
        let Counts(input, output, thinking) = sql(
            "SELECT COALESCE(SUM(prompt_tokens), 0) AS a, COALESCE(SUM(output_tokens), 0) AS b, \
             COALESCE(SUM(thinking_tokens), 0) AS c FROM messages \
             WHERE role = 'model' AND created_at >= $1",
        )
        .bind(midnight)
        .fetch_one(&mut *reads)
        .await?;
        let Counts(pending, streaming, _) = sql(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS a, \
             COALESCE(SUM(CASE WHEN status = 'streaming' THEN 1 ELSE 0 END), 0) AS b, 0 AS c \
             FROM messages WHERE status IN ('pending', 'streaming')",
        )
        .fetch_one(&mut *reads)
        .await?;
        // Message ids are UUIDv7: the ids from a day ago on start with that instant.
        let day_ago = uuid_at(now - chrono::TimeDelta::hours(24));
        let Scalar(failed): Scalar<i64> =
            sql("SELECT COUNT(*) AS value FROM messages WHERE status = 'failed' AND id >= $1")
                .bind(day_ago)
                .fetch_one(&mut *reads)
                .await?;
        let Queue(depth, oldest) =
            sql("SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM jobs WHERE run_at <= $1")
                .bind(now)
                .fetch_one(&mut *reads)
                .await?;
        Ok(Stats {
            users: UserStats {
                total: count(total),
                pro: count(pro),
                active_today: count(active),
            },
            prompts_today: count(prompts),
            tokens_today: TokenStats {
                input: count(input),
                output: count(output),
                thinking: count(thinking),
            },
            replies: ReplyStats {
                pending: count(pending),
                streaming: count(streaming),
                failed_24h: count(failed),
            },
            queue: QueueStats {
                depth: count(depth),
                oldest_age_seconds: oldest.map_or(0, |at| count((now - at).num_seconds())),
            },
        })
    }

    async fn failed_replies(&self, limit: u32) -> Result<Vec<Message>, StoreError> {
        let mut reads = self.db.reads();
        let failed: Vec<Stored> = sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE status = 'failed' ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&mut *reads)
        .await?;
        let mut replies = Vec::with_capacity(failed.len());
        // From many rooms: versions are looked up per reply that has any.
        for stored in failed {
            if let Some(message) = self.one_assembled(&mut *reads, Some(stored)).await? {
                replies.push(message);
            }
        }
        Ok(replies)
    }

    async fn audit(&self, before: Option<Uuid>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        sql("SELECT id, admin_id, action, target, at FROM admin_audit \
             WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2")
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *self.db.reads())
        .await
    }
}

/// The smallest UUIDv7 of the millisecond `at`.
fn uuid_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0_u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_uuid_of_an_instant_sorts_before_every_later_id() {
        let at = Utc::now();
        let bound = uuid_at(at);
        assert_eq!(bound.get_version_num(), 7);
        let later = Uuid::now_v7();
        assert!(bound <= later);
        assert!(uuid_at(at - chrono::TimeDelta::seconds(1)) < bound);
        assert_eq!(contains("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
