//! Chatroom use cases. The list is cached per user (see `crate::cache`) and invalidated by
//! every write that changes it, on every process.

use bytes::Bytes;
use serde::Serialize;

use super::model::{Chatroom, ChatroomId, ChatroomName, ChatroomView, DEFAULT_NAME, NameSource};
use crate::app::App;
use crate::cache::{Version, View};
use crate::error::{AppError, Result};
use crate::messages::model::Message;
use crate::users::model::UserId;

/// The most chatrooms one user may own.
pub(crate) const MAX_PER_USER: u32 = 1_000;

/// Messages shown with a chatroom.
pub(crate) const RECENT_MESSAGES: u32 = 50;

fn parse_name(name: &str) -> Result<ChatroomName> {
    ChatroomName::parse(name).map_err(|why| AppError::invalid("name", &why))
}

/// Creates a chatroom; without a name it is called [`DEFAULT_NAME`] until its first reply
/// completes and a title is generated.
pub(crate) async fn create(app: &App, user: UserId, name: Option<&str>) -> Result<Chatroom> {
    let (name, name_source) = match name {
        Some(name) => (parse_name(name)?.as_str().to_owned(), NameSource::User),
        None => (DEFAULT_NAME.to_owned(), NameSource::Default),
    };
    let now = app.clock.now();
    let room = Chatroom {
        id: ChatroomId::new(),
        user_id: user,
        name,
        name_source,
        created_at: now,
        updated_at: now,
        last_message_at: None,
    };
    if !app.store.chatrooms.create(&room, MAX_PER_USER).await? {
        return Err(AppError::invalid(
            "name",
            &format!("a user may own at most {MAX_PER_USER} chatrooms; delete one first"),
        ));
    }
    app.user_cache.invalidate(user).await;
    Ok(room)
}

#[derive(Serialize)]
struct ListBody {
    chatrooms: Vec<ChatroomView>,
}

/// The user's chatrooms as the JSON body of `GET /chatroom`, from the cache when it has them.
/// `current` is the user's version if this request read it already.
pub(crate) async fn list_json(app: &App, user: UserId, current: Option<Version>) -> Result<Bytes> {
    crate::cache::cached(app, user, View::Chatrooms, current, async || {
        let rooms = app.store.chatrooms.list(user).await?;
        let body = ListBody {
            chatrooms: rooms.iter().map(ChatroomView::from).collect(),
        };
        Ok((body, None))
    })
    .await
}

/// The chatroom, or 404 whether it does not exist or is someone else's.
pub(crate) async fn find(app: &App, user: UserId, id: ChatroomId) -> Result<Chatroom> {
    app.store
        .chatrooms
        .find(user, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The chatroom with its latest messages, oldest first.
pub(crate) async fn get_with_messages(
    app: &App,
    user: UserId,
    id: ChatroomId,
) -> Result<(Chatroom, Vec<Message>)> {
    let room = find(app, user, id).await?;
    let mut messages = app.store.messages.page(id, None, RECENT_MESSAGES).await?;
    messages.reverse();
    Ok((room, messages))
}

pub(crate) async fn rename(
    app: &App,
    user: UserId,
    id: ChatroomId,
    name: &str,
) -> Result<Chatroom> {
    let name = parse_name(name)?;
    let room = app
        .store
        .chatrooms
        .rename(user, id, name.as_str(), app.clock.now())
        .await?
        .ok_or(AppError::NotFound)?;
    app.user_cache.invalidate(user).await;
    Ok(room)
}

pub(crate) async fn delete(app: &App, user: UserId, id: ChatroomId) -> Result<()> {
    if !app
        .store
        .chatrooms
        .delete(user, id, app.clock.now())
        .await?
    {
        return Err(AppError::NotFound);
    }
    app.user_cache.invalidate(user).await;
    // Open event streams of the room end, on every process.
    crate::messages::events::publish(
        app,
        id,
        &crate::messages::events::RoomEvent::ChatroomDeleted,
    )
    .await;
    Ok(())
}
