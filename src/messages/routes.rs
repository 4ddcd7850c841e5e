//! HTTP handlers of a chatroom's messages: history, sending, retrying, and the controls of
//! the message tree (regenerate, edit, select).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::branches;
use super::model::{MessageId, MessageView};
use super::service::{self, Accepted};
use crate::chatrooms::model::ChatroomId;
use crate::chatrooms::routes::ChatroomWithMessages;
use crate::error::{AppError, Result};
use crate::http::caller::AuthUser;
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::quota::model::Usage;
use crate::uploads::model::UploadId;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_messages))
        .routes(routes!(send_message))
        .routes(routes!(retry_reply))
        .routes(routes!(regenerate_reply))
        .routes(routes!(edit_prompt))
        .routes(routes!(select_branch))
        .routes(routes!(chatroom_events))
        .routes(routes!(search_messages))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Words to find, 1 to 200 characters: every word must occur; `"quoted words"` must occur
    /// together and in that order; `-word` (or `-"a phrase"`) must not occur. A query with no
    /// word to find (only exclusions, or only punctuation) finds nothing.
    #[param(min_length = 1, max_length = 200)]
    pub(crate) q: String,
    /// 1 to 50; default 20.
    #[param(minimum = 1, maximum = 50)]
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatroomRef {
    pub(crate) id: Uuid,
    pub(crate) name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchResult {
    pub(crate) message: MessageView,
    pub(crate) chatroom: ChatroomRef,
    /// The match in context; matched words are wrapped in `**`.
    pub(crate) snippet: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchResponse {
    /// Best matches first.
    pub(crate) results: Vec<SearchResult>,
}

/// Full-text search over the caller's own messages (both roles).
#[utoipa::path(get, path = "/search", tag = "chatrooms", security(("bearer" = [])),
    params(SearchQuery),
    responses(
        (status = 200, body = SearchResponse),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search_messages(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppQuery(query): AppQuery<SearchQuery>,
) -> Result<AppJson<SearchResponse>> {
    let hits = service::search(&state, who.user_id, &query.q, query.limit.unwrap_or(20)).await?;
    Ok(AppJson(SearchResponse {
        results: hits
            .into_iter()
            .map(|hit| SearchResult {
                message: MessageView::from(&hit.message),
                chatroom: ChatroomRef {
                    id: hit.message.chatroom_id.0,
                    name: hit.chatroom_name,
                },
                snippet: hit.snippet,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only messages older than this one (the `next_before` of the previous page).
    pub(crate) before: Option<Uuid>,
    /// 1 to 100; default 50.
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryResponse {
    /// Oldest first.
    pub(crate) messages: Vec<MessageView>,
    /// The cursor of the next older page, or `null` at the beginning.
    pub(crate) next_before: Option<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SendMessageRequest {
    /// 1 to 8,000 characters after trimming. `message` is accepted as an alias.
    #[serde(alias = "message")]
    #[schema(
        example = "Plan a three-day trip to Goa",
        min_length = 1,
        max_length = 8000
    )]
    pub(crate) content: String,
    /// Up to 4 of your uploads (`POST /uploads`), sent to the model with the prompt. On
    /// `edit`, leaving it out keeps the edited prompt's files; `[]` sends none.
    #[serde(default)]
    #[schema(max_items = 4)]
    pub(crate) attachments: Option<Vec<Uuid>>,
}

impl SendMessageRequest {
    fn attachments(&self) -> Option<Vec<UploadId>> {
        self.attachments
            .as_ref()
            .map(|ids| ids.iter().copied().map(UploadId).collect())
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SendQuery {
    /// Hold the response until the reply is completed or failed.
    pub(crate) wait: Option<bool>,
    /// Seconds to wait, 1 to 60 (default 30); only with `wait=true`.
    #[param(minimum = 1, maximum = 60)]
    pub(crate) timeout: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageAccepted {
    /// The user's message.
    pub(crate) message: MessageView,
    /// The model's reply: `pending`, or final when the request waited for it.
    pub(crate) reply: MessageView,
    pub(crate) usage: Usage,
}

/// A page of a chatroom's history.
#[utoipa::path(get, path = "/chatroom/{id}/messages", tag = "chatrooms", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chatroom id"), HistoryQuery),
    responses(
        (status = 200, body = HistoryResponse),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: limit out of range", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_messages(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
    AppQuery(query): AppQuery<HistoryQuery>,
) -> Result<AppJson<HistoryResponse>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid("limit", "must be 1 to 100"));
    }
    let page = service::page(
        &state,
        who.user_id,
        ChatroomId(id),
        query.before.map(MessageId),
        limit,
    )
    .await?;
    Ok(AppJson(HistoryResponse {
        messages: page.messages.iter().map(MessageView::from).collect(),
        next_before: page.next_before.map(|m| m.0),
    }))
}

/// Sends a prompt. The reply is produced asynchronously and streamed on `/events`.
#[utoipa::path(post, path = "/chatroom/{id}/message", tag = "chatrooms", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chatroom id"), SendQuery),
    request_body = SendMessageRequest,
    responses(
        (status = 200, description = "With `wait=true`: the reply finished in time", body = MessageAccepted),
        (status = 202, description = "Accepted; carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds to UTC midnight); an unlimited plan reports a limit of 2147483647", body = MessageAccepted),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`daily_limit_reached`, with `Retry-After` (seconds to UTC midnight)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn send_message(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
    AppQuery(query): AppQuery<SendQuery>,
    AppJson(body): AppJson<SendMessageRequest>,
) -> Result<Response> {
    let wait = match (query.wait.unwrap_or(false), query.timeout) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(AppError::invalid("timeout", "only applies with wait=true"));
        }
        (true, None) => Some(Duration::from_secs(30)),
        (true, Some(secs)) if (1..=60).contains(&secs) => Some(Duration::from_secs(secs)),
        (true, Some(_)) => return Err(AppError::invalid("timeout", "must be 1 to 60 seconds")),
    };
    let files = body.attachments().unwrap_or_default();
    let room = ChatroomId(id);
    let accepted = service::send(&state, who.user_id, room, &body.content, &files, wait).await?;
    Ok(accepted_response(accepted, state.clock.now()))
}

/// Queues a failed reply again; it does not count against the daily limit.
#[utoipa::path(post, path = "/chatroom/{id}/messages/{message_id}/retry", tag = "chatrooms",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Chatroom id"),
        ("message_id" = Uuid, Path, description = "The failed reply's id"),
    ),
    responses(
        (status = 202, body = MessageAccepted),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_retryable`: the message is not a failed reply", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retry_reply(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath((id, message_id)): AppPath<(Uuid, Uuid)>,
) -> Result<Response> {
    let accepted =
        service::retry(&state, who.user_id, ChatroomId(id), MessageId(message_id)).await?;
    Ok(accepted_response(accepted, state.clock.now()))
}

/// The chatroom's live events (Server-Sent Events): `message.created`, `reply.delta`,
/// `reply.completed`, `reply.failed`. Every event has an `id`; reconnecting with
/// `Last-Event-ID` first sends what was missed, including the content so far of replies in
/// progress. A `reply.delta` carries `offset`, its position in the reply: a delta at offset 0
/// replaces what the client holds. Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/chatroom/{id}/events", tag = "chatrooms", security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Chatroom id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn chatroom_events(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response> {
    let last = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(super::stream::parse_last_event_id);
    let listener = super::stream::Listener {
        user: who.user_id,
        token: crate::http::caller::bearer_token_of(&headers)
            .unwrap_or_default()
            .to_owned(),
    };
    let events = super::stream::open(&state.0, listener, ChatroomId(id), last).await?;
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(15))
        .text("keep-alive");
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}

fn accepted_response(accepted: Accepted, now: chrono::DateTime<chrono::Utc>) -> Response {
    let status = if accepted.reply.status.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let headers = rate_limit_headers(&accepted.usage, now);
    let body = MessageAccepted {
        message: MessageView::from(&accepted.prompt),
        reply: MessageView::from(&accepted.reply),
        usage: accepted.usage,
    };
    (status, headers, AppJson(body)).into_response()
}

/// What the `RateLimit-*` headers report as an unlimited plan's limit: more prompts than a
/// day can hold, so a client that shows "remaining" never warns.
pub(crate) const UNLIMITED: u32 = i32::MAX as u32;

/// `RateLimit-*` headers for the caller's plan; an unlimited plan reports [`UNLIMITED`].
fn rate_limit_headers(usage: &Usage, now: chrono::DateTime<chrono::Utc>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let (limit, remaining) = match (usage.daily_limit, usage.remaining) {
        (Some(limit), Some(remaining)) => (limit, remaining),
        _ => (UNLIMITED, UNLIMITED.saturating_sub(usage.used_today)),
    };
    let reset = (usage.resets_at - now).num_seconds().max(0);
    headers.insert("ratelimit-limit", HeaderValue::from(limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
    headers
}

/// Queues a new reply to the same prompt as a new version beside the old one (which stays),
/// and makes it active. Counts against the daily limit like a new prompt.
#[utoipa::path(post, path = "/chatroom/{id}/messages/{message_id}/regenerate", tag = "chatrooms",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Chatroom id"),
        ("message_id" = Uuid, Path, description = "A reply that is completed, failed or cancelled"),
    ),
    responses(
        (status = 202, body = MessageAccepted, description = "The prompt, and the new reply (pending)"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`reply_in_progress`: the reply is still pending or streaming", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: the message is a prompt, not a reply", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`daily_limit_reached`, with `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn regenerate_reply(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath((id, message_id)): AppPath<(Uuid, Uuid)>,
) -> Result<Response> {
    let (room, reply) = (ChatroomId(id), MessageId(message_id));
    let accepted = branches::regenerate(&state, who.user_id, room, reply).await?;
    Ok(accepted_response(accepted, state.clock.now()))
}

/// Adds a new version of a prompt with new content, under the same parent, queues its reply
/// and makes that branch active (the old branch stays, reachable with `select`). Counts as a
/// prompt.
#[utoipa::path(post, path = "/chatroom/{id}/messages/{message_id}/edit", tag = "chatrooms",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Chatroom id"),
        ("message_id" = Uuid, Path, description = "The prompt (a user message) to edit"),
    ),
    request_body = SendMessageRequest,
    responses(
        (status = 202, body = MessageAccepted, description = "The new prompt, and its reply (pending)"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: empty or too long content, the message is a reply, or an attachment that is not one of your uploads (or more than 4)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`daily_limit_reached`, with `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn edit_prompt(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath((id, message_id)): AppPath<(Uuid, Uuid)>,
    AppJson(body): AppJson<SendMessageRequest>,
) -> Result<Response> {
    let (room, prompt) = (ChatroomId(id), MessageId(message_id));
    let files = body.attachments();
    let edit = branches::edit(
        &state,
        who.user_id,
        room,
        prompt,
        &body.content,
        files.as_deref(),
    );
    let accepted = edit.await?;
    Ok(accepted_response(accepted, state.clock.now()))
}

/// Makes the path through a message active: the message, its ancestors, and below it the
/// newest message of each following level (a version's own continuation).
#[utoipa::path(post, path = "/chatroom/{id}/messages/{message_id}/select", tag = "chatrooms",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Chatroom id"),
        ("message_id" = Uuid, Path, description = "Any message of the chatroom"),
    ),
    responses(
        (status = 200, body = ChatroomWithMessages, description = "The chatroom with the latest 50 messages of the now active path, oldest first"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn select_branch(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath((id, message_id)): AppPath<(Uuid, Uuid)>,
) -> Result<AppJson<ChatroomWithMessages>> {
    let (room, message) = (ChatroomId(id), MessageId(message_id));
    let (room, messages) = branches::select(&state, who.user_id, room, message).await?;
    Ok(AppJson(ChatroomWithMessages::of(&room, &messages)))
}
