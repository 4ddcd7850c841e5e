//! `BranchRepo`, once for both databases: new versions of a message and the room's active
//! path. The path is kept as a flag on its messages (`on_path`), so the hot reads (pages,
//! search) filter on an index instead of walking the tree; only a branch change walks it, from
//! the changed message up to where it meets the path and down to the newest leaf.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::messages::{Parent, Stored, attach_files, insert_message, message_columns, take_prompt};
use super::sql::{Connection, Lock, Scalar, sql};
use crate::chatrooms::model::ChatroomId;
use crate::messages::model::{Message, MessageId, Role};
use crate::messages::repo::{BranchRepo, NewVersion, VersionOutcome};
use crate::quota::model::QuotaPolicy;
use crate::replies::model::ReplyJob;
use crate::storage::error::StoreError;
use crate::users::model::UserId;

/// From the message `$1` up its ancestors, to the first one on the active path (included).
const UP_TO_THE_PATH: &str = "WITH RECURSIVE up (id, parent_id, on_path) AS ( \
         SELECT id, parent_id, on_path FROM messages WHERE id = $1 \
         UNION ALL \
         SELECT m.id, m.parent_id, m.on_path FROM messages m JOIN up ON m.id = up.parent_id \
         WHERE NOT up.on_path) ";

/// From the message `$1` down, the newest child of each level.
const DOWN_THE_NEWEST: &str = "WITH RECURSIVE down (id) AS ( \
         SELECT id FROM messages WHERE id = $1 \
         UNION ALL \
         SELECT (SELECT c.id FROM messages c WHERE c.parent_id = down.id \
                 ORDER BY c.id DESC LIMIT 1) \
         FROM down WHERE down.id IS NOT NULL) ";

impl SqlStore {
    /// Inside a transaction holding the room's lock: makes the path through `message` the
    /// room's active path. The active path is one chain from the room's first prompt down,
    /// its ids increasing, so what leaves it is everything on it below the fork.
    async fn activate(
        &self,
        tx: &mut dyn Connection,
        room: ChatroomId,
        message: MessageId,
    ) -> Result<(), StoreError> {
        let fork: Option<Scalar<Uuid>> = sql(format!(
            "{UP_TO_THE_PATH}SELECT id AS value FROM up WHERE on_path"
        ))
        .bind(message.0)
        .fetch_optional(&mut *tx)
        .await?;
        sql("UPDATE messages SET on_path = FALSE \
             WHERE chatroom_id = $1 AND on_path = TRUE AND ($2 IS NULL OR id > $2)")
        .bind(room.0)
        .bind(fork.map(|Scalar(id)| id))
        .execute(&mut *tx)
        .await?;
        sql(format!(
            "UPDATE messages SET on_path = TRUE \
             WHERE id IN ({UP_TO_THE_PATH}SELECT id FROM up) \
             OR id IN ({DOWN_THE_NEWEST}SELECT id FROM down WHERE id IS NOT NULL)"
        ))
        .bind(message.0)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// The message, locked for the rest of the transaction, if it is in this user's room.
    pub(super) async fn locked_message(
        &self,
        tx: &mut dyn Connection,
        user: UserId,
        room: ChatroomId,
        id: MessageId,
    ) -> Result<Option<Stored>, StoreError> {
        sql(format!(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE id = $1 AND chatroom_id = $2 AND user_id = $3{}"
            ),
            self.locked(Lock::Update)
        ))
        .bind(id.0)
        .bind(room.0)
        .bind(user.0)
        .fetch_optional(tx)
        .await
    }
}

/// Marks every message beside `of` (same parent and role) as having versions.
async fn mark_versions(tx: &mut dyn Connection, of: &Message) -> Result<(), StoreError> {
    sql("UPDATE messages SET has_versions = TRUE \
         WHERE chatroom_id = $1 AND role = $2 AND parent_id IS NOT DISTINCT FROM $3")
    .bind(of.chatroom_id.0)
    .bind(of.role.as_str())
    .bind(of.parent_id.map(|p| p.0))
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl BranchRepo for SqlStore {
    async fn add_version(
        &self,
        user: UserId,
        room: ChatroomId,
        new: &NewVersion,
        quota: &QuotaPolicy,
    ) -> Result<VersionOutcome, StoreError> {
        let mut tx = self.db.begin().await?;
        let locked = self.lock_room_for_new_message(&mut *tx, user, room, new.now);
        let Some(tier) = locked.await? else {
            return Ok(VersionOutcome::NotFound);
        };
        let Some(Stored { message: of, .. }) =
            self.locked_message(&mut *tx, user, room, new.of).await?
        else {
            return Ok(VersionOutcome::NotFound);
        };
        // An edit adds a prompt beside `of`; a regeneration, a reply to `of`'s prompt.
        let prompt = match (&new.prompt, of.role) {
            (Some(edited), Role::User) => {
                let mut prompt = Message {
                    parent_id: of.parent_id,
                    ..edited.clone()
                };
                if new.keep_attachments {
                    let kept = super::uploads::attachments_of(&mut *tx, &[of.id]).await?;
                    prompt.attachments = kept.into_iter().map(|(_, upload)| upload).collect();
                }
                prompt
            }
            (None, Role::Model) if !of.status.is_final() => {
                return Ok(VersionOutcome::InProgress);
            }
            (None, Role::Model) => {
                let parent = of.parent_id.ok_or(StoreError::NotFound)?;
                let asked = self.locked_message(&mut *tx, user, room, parent).await?;
                asked.ok_or(StoreError::NotFound)?.message
            }
            _ => return Ok(VersionOutcome::WrongRole),
        };
        let (used, limit) = match take_prompt(&mut *tx, user, new.day, tier, quota).await? {
            Ok(taken) => taken,
            Err(limit) => return Ok(VersionOutcome::LimitReached { limit, tier }),
        };
        let reply = Message {
            parent_id: Some(prompt.id),
            ..new.reply.clone()
        };
        if new.prompt.is_some() {
            insert_message(&prompt, Parent::Given, false, &mut *tx).await?;
            if !attach_files(&mut *tx, &prompt).await? {
                return Ok(VersionOutcome::AttachmentGone);
            }
        }
        insert_message(&reply, Parent::Given, false, &mut *tx).await?;
        // The new message stands beside `of`: same parent, same role.
        mark_versions(&mut *tx, &of).await?;
        self.activate(&mut *tx, room, reply.id).await?;
        let job = ReplyJob::of(&reply).queued(new.job_id, new.now);
        self.enqueue_in(&mut *tx, &job).await?;
        let written: Vec<Stored> = sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id IN ($1, $2) ORDER BY id"
        ))
        .bind(prompt.id.0)
        .bind(reply.id.0)
        .fetch_all(&mut *tx)
        .await?;
        let mut written = self.assembled(&mut *tx, written).await?.into_iter();
        let (Some(prompt), Some(reply)) = (written.next(), written.next()) else {
            return Err(StoreError::NotFound);
        };
        tx.commit().await?;
        self.wake_workers().await;
        Ok(VersionOutcome::Accepted {
            used,
            limit,
            prompt: Box::new(prompt),
            reply: Box::new(reply),
        })
    }

    async fn select(
        &self,
        user: UserId,
        room: ChatroomId,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        if self.lock_room(&mut *tx, user, room, now).await?.is_none()
            || self
                .locked_message(&mut *tx, user, room, message)
                .await?
                .is_none()
        {
            return Ok(false);
        }
        self.activate(&mut *tx, room, message).await?;
        tx.commit().await?;
        Ok(true)
    }
}
