//! HTTP handlers of `/chatroom` and `/chatroom/{id}`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{Chatroom, ChatroomId, ChatroomView};
use super::service;
use crate::error::Result;
use crate::http::caller::AuthUser;
use crate::http::extract::{AppJson, AppPath, OptionalJson};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::messages::model::{Message, MessageView};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_chatroom, list_chatrooms))
        .routes(routes!(get_chatroom, rename_chatroom, delete_chatroom))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ChatroomRequest {
    /// 1 to 100 characters after trimming.
    #[schema(example = "Trip to Goa", min_length = 1, max_length = 100)]
    pub(crate) name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatroomListResponse {
    /// Newest activity first.
    pub(crate) chatrooms: Vec<ChatroomView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatroomWithMessages {
    #[serde(flatten)]
    pub(crate) chatroom: ChatroomView,
    /// The latest 50, oldest first.
    pub(crate) messages: Vec<MessageView>,
}

impl ChatroomWithMessages {
    pub(crate) fn of(room: &Chatroom, messages: &[Message]) -> Self {
        Self {
            chatroom: ChatroomView::from(room),
            messages: messages.iter().map(MessageView::from).collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct CreateChatroomRequest {
    /// 1 to 100 characters after trimming. Without it the chatroom is called `New chat` until
    /// its first reply completes; then a title is generated from the first exchange (sent as
    /// `chatroom.updated`), unless it was renamed meanwhile.
    #[schema(example = "Trip to Goa", min_length = 1, max_length = 100)]
    pub(crate) name: Option<String>,
}

/// Creates a chatroom (at most 1,000 per user), named or to be titled.
#[utoipa::path(post, path = "/chatroom", tag = "chatrooms", security(("bearer" = [])),
    request_body(content = CreateChatroomRequest, description = "Optional; an empty body is fine"),
    responses(
        (status = 201, body = ChatroomView),
        (status = 422, description = "`validation_failed` (also past 1,000 chatrooms)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_chatroom(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    OptionalJson(body): OptionalJson<CreateChatroomRequest>,
) -> Result<(StatusCode, AppJson<ChatroomView>)> {
    let name = body.unwrap_or_default().name;
    let room = service::create(&state, who.user_id, name.as_deref()).await?;
    Ok((StatusCode::CREATED, AppJson(ChatroomView::from(&room))))
}

/// The caller's chatrooms, newest activity first (cached, never stale for its owner).
#[utoipa::path(get, path = "/chatroom", tag = "chatrooms", security(("bearer" = [])),
    responses(
        (status = 200, body = ChatroomListResponse),
    ))]
async fn list_chatrooms(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    known: Option<axum::Extension<crate::cache::Known>>,
) -> Result<Response> {
    let current = known.map(|axum::Extension(crate::cache::Known(version))| version);
    let body = service::list_json(&state, who.user_id, current).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A chatroom with its latest 50 messages.
#[utoipa::path(get, path = "/chatroom/{id}", tag = "chatrooms", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chatroom id")),
    responses(
        (status = 200, body = ChatroomWithMessages),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_chatroom(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<ChatroomWithMessages>> {
    let (room, messages) = service::get_with_messages(&state, who.user_id, ChatroomId(id)).await?;
    Ok(AppJson(ChatroomWithMessages::of(&room, &messages)))
}

/// Renames a chatroom.
#[utoipa::path(patch, path = "/chatroom/{id}", tag = "chatrooms", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chatroom id")),
    request_body = ChatroomRequest,
    responses(
        (status = 200, body = ChatroomView),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rename_chatroom(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<ChatroomRequest>,
) -> Result<AppJson<ChatroomView>> {
    let room = service::rename(&state, who.user_id, ChatroomId(id), &body.name).await?;
    Ok(AppJson(ChatroomView::from(&room)))
}

/// Deletes a chatroom with its messages.
#[utoipa::path(delete, path = "/chatroom/{id}", tag = "chatrooms", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chatroom id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_chatroom(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode> {
    service::delete(&state, who.user_id, ChatroomId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
