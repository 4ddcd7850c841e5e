//! The account's data, taken out (GDPR art. 20): one JSON document
//! `{"user", "subscription", "sessions", "chatrooms": [Chatroom plus "messages"], "exported_at"}`
//! with every message of every branch, written while it is sent. Rooms are read a page of
//! messages at a time and the document leaves in chunks through a small bounded channel, so
//! memory stays flat whatever the history's size, and a client that stops reading stops the
//! reads.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;

use crate::app::App;
use crate::auth::routes::SessionInfo;
use crate::auth::tokens::Authenticated;
use crate::billing::routes::SubscriptionStatusResponse;
use crate::chatrooms::model::{Chatroom, ChatroomView};
use crate::error::{AppError, Result};
use crate::messages::model::{Message, MessageId, MessageView};
use crate::storage::error::StoreError;
use crate::users::routes::UserResponse;

/// Messages read at once.
const PAGE: u32 = 200;
/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the client at most.
const IN_FLIGHT: usize = 4;

/// What the document begins with: everything but the messages, read before the answer
/// starts (so a failure here is still a proper error).
#[derive(Serialize)]
struct Head {
    user: UserResponse,
    subscription: SubscriptionStatusResponse,
    sessions: Vec<SessionInfo>,
}

/// An export ready to be sent: its file name and its bytes as they are produced.
pub(crate) struct Export {
    pub(crate) file_name: String,
    pub(crate) body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
}

/// Reads what the document begins with and starts writing the rest.
pub(crate) async fn export(app: Arc<App>, who: Authenticated) -> Result<Export> {
    let exported_at = app.clock.now();
    let user = app
        .store
        .users
        .find_by_id(who.user_id, exported_at)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let subscription = crate::billing::service::status(&app, who.user_id).await?;
    let sessions = crate::auth::service::list_sessions(&app, who).await?;
    let rooms = app.store.chatrooms.list(who.user_id).await?;
    let head = Head {
        user: user.into(),
        subscription: subscription.into(),
        sessions: sessions
            .into_iter()
            .map(|s| SessionInfo::new(s, who.session_id))
            .collect(),
    };
    let (sender, mut chunks) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let mut writer = Writer {
        buffer: Vec::with_capacity(CHUNK * 2),
        sender,
    };
    tokio::spawn(async move {
        if let Err(err) = writer.document(&app, &head, &rooms, exported_at).await {
            // The answer has begun: the only way left to say it failed is to cut it short,
            // so the client never mistakes a partial document for a whole one.
            tracing::error!(error = %err, "export failed midway; the response is cut short");
            let _ = writer
                .sender
                .send(Err(std::io::Error::other("the export failed")))
                .await;
        }
    });
    Ok(Export {
        file_name: format!("gemchat-export-{}.json", exported_at.format("%Y-%m-%d")),
        body: Box::pin(futures::stream::poll_fn(move |cx| chunks.poll_recv(cx))),
    })
}

/// Why writing stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("the client went away")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("serialising: {0}")]
    Json(#[from] serde_json::Error),
}

struct Writer {
    buffer: Vec<u8>,
    sender: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl Writer {
    async fn document(
        &mut self,
        app: &App,
        head: &Head,
        rooms: &[Chatroom],
        exported_at: DateTime<Utc>,
    ) -> Result<(), Stop> {
        let result = self.write_all(app, head, rooms, exported_at).await;
        match result {
            Err(Stop::Gone) => Ok(()),
            other => other,
        }
    }

    async fn write_all(
        &mut self,
        app: &App,
        head: &Head,
        rooms: &[Chatroom],
        exported_at: DateTime<Utc>,
    ) -> Result<(), Stop> {
        // The head's fields, without its closing brace, then the rooms.
        let head = serde_json::to_vec(head)?;
        self.buffer.extend_from_slice(&head[..head.len() - 1]);
        self.buffer.extend_from_slice(b",\"chatrooms\":[");
        for (i, room) in rooms.iter().enumerate() {
            if i > 0 {
                self.buffer.push(b',');
            }
            self.room(app, room).await?;
        }
        self.buffer.extend_from_slice(b"],\"exported_at\":");
        serde_json::to_writer(&mut self.buffer, &exported_at)?;
        self.buffer.push(b'}');
        self.flush().await
    }

    /// One room: its fields, then `"messages"`, read a page at a time.
    async fn room(&mut self, app: &App, room: &Chatroom) -> Result<(), Stop> {
        let fields = serde_json::to_vec(&ChatroomView::from(room))?;
        self.buffer.extend_from_slice(&fields[..fields.len() - 1]);
        self.buffer.extend_from_slice(b",\"messages\":[");
        let mut after: Option<MessageId> = None;
        let mut first = true;
        loop {
            let page = app
                .store
                .messages
                .every_branch(room.id, after, PAGE)
                .await?;
            for message in &page {
                if !first {
                    self.buffer.push(b',');
                }
                first = false;
                write_message(&mut self.buffer, message)?;
                if self.buffer.len() >= CHUNK {
                    self.flush().await?;
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id),
                _ => break,
            }
        }
        self.buffer.extend_from_slice(b"]}");
        Ok(())
    }

    /// Sends what is gathered; waits while the client is behind.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::copy_from_slice(&self.buffer);
        self.buffer.clear();
        self.sender.send(Ok(chunk)).await.map_err(|_| Stop::Gone)
    }
}

/// A message as the API shows it; its files also say where to download them.
fn write_message(buffer: &mut Vec<u8>, message: &Message) -> Result<(), serde_json::Error> {
    let view = MessageView::from(message);
    if view.attachments.is_empty() {
        return serde_json::to_writer(buffer, &view);
    }
    let mut value = serde_json::to_value(&view)?;
    if let Some(files) = value["attachments"].as_array_mut() {
        for file in files {
            let path = format!("/uploads/{}", file["id"].as_str().unwrap_or_default());
            file["download_path"] = serde_json::Value::String(path);
        }
    }
    serde_json::to_writer(buffer, &value)
}
