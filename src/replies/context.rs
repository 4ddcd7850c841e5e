//! The conversation a reply answers, chosen from the path above it: the prompt, then earlier
//! exchanges newest first while they fit the budget. An exchange whose reply failed, or was
//! cancelled before any text, is left out: a prompt the model refused (blocked, invalid) never
//! rides along with later prompts.

use crate::ai::{InlineFile, Turn, estimate_tokens};
use crate::messages::model::{Message, MessageStatus, Role};
use crate::objects::{ObjectError, Objects};

/// How much context a reply may be sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Messages, the prompt included (`AI_CONTEXT_MESSAGES`).
    pub(crate) messages: u32,
    /// Tokens, the prompt included (`AI_CONTEXT_TOKENS`).
    pub(crate) tokens: u32,
}

impl Budget {
    /// How many messages to read up the path: enough to skip left-out exchanges.
    pub(crate) fn path_to_read(self) -> u32 {
        self.messages.saturating_mul(4).clamp(1, 400)
    }
}

/// What a message costs in the context: a reply's stored output count (thinking is not sent
/// back), else an estimate; and the files a prompt carries.
fn cost(message: &Message) -> u32 {
    let text = match (message.role, message.meta.output_tokens) {
        (Role::Model, Some(tokens)) if tokens > 0 => tokens,
        _ => estimate_tokens(&message.content),
    };
    message
        .attachments
        .iter()
        .fold(text, |total, file| total.saturating_add(file.tokens))
}

/// Whether a reply's exchange belongs in later contexts.
fn answered(reply: &Message) -> bool {
    matches!(
        reply.status,
        MessageStatus::Completed | MessageStatus::Cancelled
    ) && !reply.content.is_empty()
}

/// The turns of `chosen`, with the bytes of their files read from the object store.
pub(crate) async fn turns(
    objects: &dyn Objects,
    chosen: &[&Message],
) -> Result<Vec<Turn>, ObjectError> {
    let mut turns = Vec::with_capacity(chosen.len());
    for message in chosen {
        let mut files = Vec::with_capacity(message.attachments.len());
        for upload in &message.attachments {
            files.push(InlineFile {
                name: upload.name.clone(),
                mime_type: upload.mime_type.clone(),
                data: objects.read_all(&upload.key()).await?,
            });
        }
        turns.push(Turn {
            role: message.role,
            text: message.content.clone(),
            files,
        });
    }
    Ok(turns)
}

/// The messages to send, oldest first, from `path` (oldest first, ending with the prompt).
pub(crate) fn select(path: &[Message], budget: Budget) -> Vec<&Message> {
    let Some((prompt, earlier)) = path.split_last() else {
        return Vec::new();
    };
    let mut newest_first = vec![prompt];
    let mut tokens = cost(prompt);
    let mut rest = earlier;
    while let Some((reply, before)) = rest.split_last() {
        let Some((asked, before_that)) = before.split_last() else {
            break;
        };
        if reply.role != Role::Model || asked.role != Role::User {
            // Not an exchange (a reply without its prompt): step over the one message.
            rest = before;
            continue;
        }
        rest = before_that;
        if !answered(reply) {
            continue;
        }
        let both = cost(asked).saturating_add(cost(reply));
        let count = u32::try_from(newest_first.len()).unwrap_or(u32::MAX);
        if count.saturating_add(2) > budget.messages || tokens.saturating_add(both) > budget.tokens
        {
            break;
        }
        tokens += both;
        newest_first.push(reply);
        newest_first.push(asked);
    }
    newest_first.reverse();
    newest_first
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::chatrooms::model::ChatroomId;
    use crate::messages::model::{MessageId, ReplyMeta};
    use crate::users::model::UserId;

    fn message(role: Role, text: &str, status: MessageStatus) -> Message {
        let now = Utc::now();
        Message {
            id: MessageId::new(),
            chatroom_id: ChatroomId(uuid::Uuid::nil()),
            user_id: UserId(uuid::Uuid::nil()),
            parent_id: None,
            versions: Vec::new(),
            attachments: Vec::new(),
            role,
            content: text.into(),
            status,
            error: None,
            quota_day: None,
            meta: ReplyMeta::default(),
            created_at: now,
            updated_at: now,
        }
    }

    fn asked(text: &str) -> Message {
        message(Role::User, text, MessageStatus::Completed)
    }

    fn answer(text: &str) -> Message {
        message(Role::Model, text, MessageStatus::Completed)
    }

    fn texts<'a>(chosen: &[&'a Message]) -> Vec<&'a str> {
        chosen.iter().map(|m| m.content.as_str()).collect()
    }

    const WIDE: Budget = Budget {
        messages: 20,
        tokens: 32_000,
    };

    #[test]
    fn the_whole_path_when_it_fits() {
        let path = [asked("a"), answer("A"), asked("b"), answer("B"), asked("c")];
        assert_eq!(texts(&select(&path, WIDE)), ["a", "A", "b", "B", "c"]);
    }

    #[test]
    fn refused_and_empty_cancelled_exchanges_are_left_out() {
        let mut blocked = answer("");
        blocked.status = MessageStatus::Failed;
        let mut stopped = answer("");
        stopped.status = MessageStatus::Cancelled;
        let mut partial = answer("half an ans");
        partial.status = MessageStatus::Cancelled;
        let path = [
            asked("ok"),
            answer("fine"),
            asked("forbidden"),
            blocked,
            asked("stopped"),
            stopped,
            asked("partly"),
            partial,
            asked("now"),
        ];
        assert_eq!(
            texts(&select(&path, WIDE)),
            ["ok", "fine", "partly", "half an ans", "now"]
        );
    }

    #[test]
    fn newest_exchanges_first_within_the_message_budget() {
        let path = [asked("a"), answer("A"), asked("b"), answer("B"), asked("c")];
        let three = Budget {
            messages: 3,
            ..WIDE
        };
        assert_eq!(texts(&select(&path, three)), ["b", "B", "c"]);
        let one = Budget {
            messages: 1,
            ..WIDE
        };
        assert_eq!(texts(&select(&path, one)), ["c"], "the prompt always goes");
    }

    #[test]
    fn the_token_budget_counts_stored_counts_and_estimates_the_rest() {
        let mut long = answer("short text, but a long answer as the model counted it");
        long.meta.output_tokens = Some(1_000);
        let path = [
            asked("old"),
            answer("kept?"),
            asked("q"),
            long,
            asked(&"x".repeat(400)),
        ];
        // The prompt: 100 tokens; the newest exchange: 1 + 1,000; the oldest: 1 + 2.
        let fits_one = Budget {
            messages: 20,
            tokens: 1_101,
        };
        assert_eq!(select(&path, fits_one).len(), 3);
        let fits_none = Budget {
            messages: 20,
            tokens: 1_100,
        };
        assert_eq!(
            select(&path, fits_none).len(),
            1,
            "an exchange that does not fit stops the walk (no gaps in the history)"
        );
    }
}
