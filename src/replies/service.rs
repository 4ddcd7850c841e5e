//! Reply controls: cancelling a reply, wherever its worker runs.

use super::repo::Cancel;
use crate::app::App;
use crate::chatrooms::model::ChatroomId;
use crate::error::{AppError, Result};
use crate::messages::events::{self, RoomEvent};
use crate::messages::model::{Message, MessageId};
use crate::users::model::UserId;

/// Cancels a `pending` or `streaming` reply: it keeps the text streamed so far, a reply that
/// had not started gives its prompt back, and the worker streaming it (on any process) hears
/// `reply.cancelled` and closes the AI call. Cancelling a cancelled reply changes nothing.
pub(crate) async fn cancel(
    app: &App,
    user: UserId,
    room: ChatroomId,
    reply: MessageId,
) -> Result<Message> {
    // What the room's listeners were shown so far.
    let streamed = app.progress.get(reply).await.unwrap_or_default();
    let now = app.clock.now();
    let replies = &app.store.replies;
    match replies.cancel(user, room, reply, &streamed, now).await? {
        Cancel::Cancelled(cancelled) => {
            app.progress.clear(reply).await;
            // A reply that had not started gave its prompt back.
            app.user_cache.invalidate(user).await;
            events::publish(app, room, &RoomEvent::cancelled(&cancelled)).await;
            Ok(cancelled)
        }
        Cancel::AlreadyCancelled(cancelled) => Ok(cancelled),
        Cancel::NotCancellable => Err(AppError::Conflict {
            code: "not_cancellable",
            detail: "Only a pending or streaming reply can be cancelled.",
        }),
        Cancel::NotFound => Err(AppError::NotFound),
    }
}
