//! The reply job: which reply to produce, queued in the same transaction as its prompt.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chatrooms::model::ChatroomId;
use crate::jobs::queue::{JobId, NewJob};
use crate::messages::model::{Message, MessageId};
use crate::users::model::UserId;

/// The `kind` of reply jobs.
pub(crate) const KIND: &str = "reply";

/// The payload of a reply job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyJob {
    pub reply_id: MessageId,
    pub chatroom_id: ChatroomId,
    pub user_id: UserId,
}

impl ReplyJob {
    pub(crate) fn of(reply: &Message) -> Self {
        Self {
            reply_id: reply.id,
            chatroom_id: reply.chatroom_id,
            user_id: reply.user_id,
        }
    }

    /// The name of its job.
    pub fn key(&self) -> String {
        format!("reply:{}", self.reply_id)
    }

    /// The job to queue: in its chatroom's lane (a room's replies are produced in order),
    /// belonging to the room and its owner.
    pub(crate) fn queued(&self, id: JobId, now: DateTime<Utc>) -> NewJob {
        NewJob {
            id,
            lane: Some(format!("chatroom:{}", self.chatroom_id)),
            key: Some(self.key()),
            user_id: Some(self.user_id),
            chatroom_id: Some(self.chatroom_id),
            ..NewJob::new(KIND, self, now)
        }
    }
}
