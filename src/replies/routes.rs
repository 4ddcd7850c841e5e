//! HTTP handlers of reply controls.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::service;
use crate::chatrooms::model::ChatroomId;
use crate::error::Result;
use crate::http::caller::AuthUser;
use crate::http::extract::AppPath;
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::messages::model::{MessageId, MessageView};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cancel_reply))
}

/// Stops a reply that is pending or streaming, wherever its worker runs: the AI call is
/// closed within moments and the reply becomes `cancelled` with the text streamed so far
/// (`reply.cancelled` is sent). A reply cancelled before it started gives its prompt back;
/// one cancelled while streaming counts. A reply queued behind it in the room starts at once.
#[utoipa::path(post, path = "/chatroom/{id}/messages/{message_id}/cancel", tag = "chatrooms",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Chatroom id"),
        ("message_id" = Uuid, Path, description = "The reply's id"),
    ),
    responses(
        (status = 200, body = MessageView, description = "The reply, cancelled (also when it already was)"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_cancellable`: a user message, or a reply that already completed or failed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_reply(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath((id, message_id)): AppPath<(Uuid, Uuid)>,
) -> Result<Json<MessageView>> {
    let room = ChatroomId(id);
    let cancelled = service::cancel(&state, who.user_id, room, MessageId(message_id)).await?;
    Ok(Json(MessageView::from(&cancelled)))
}
