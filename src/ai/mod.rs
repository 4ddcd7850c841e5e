//! The AI provider port: a conversation in, a stream of text deltas out. Adapters: `gemini`
//! (Google's REST API) and `echo` (offline, for development).

pub(crate) mod echo;
pub(crate) mod gemini;
pub mod pause;

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::messages::model::{ReplyMeta, Role};

/// Tokens of text without a count from the model: about four characters a token (Gemini's
/// rule of thumb), at least one.
pub(crate) fn estimate_tokens(text: &str) -> u32 {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    chars.div_ceil(4).max(1)
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Turn {
    pub(crate) role: Role,
    pub(crate) text: String,
    /// Files sent with a prompt.
    pub(crate) files: Vec<InlineFile>,
}

impl Turn {
    /// A turn of text alone.
    pub(crate) fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            text: text.into(),
            files: Vec::new(),
        }
    }
}

/// A file sent inline with a turn.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct InlineFile {
    pub(crate) name: String,
    pub(crate) mime_type: String,
    pub(crate) data: bytes::Bytes,
}

impl std::fmt::Debug for InlineFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineFile")
            .field("name", &self.name)
            .field("mime_type", &self.mime_type)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// What the model is asked: a system instruction and the conversation, ending with the
/// prompt to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub(crate) system: String,
    pub(crate) turns: Vec<Turn>,
    /// The model to ask; `None`: the provider's own (`GEMINI_MODEL`).
    pub(crate) model: Option<String>,
}

/// A piece of a streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Delta(String),
    /// The reply ended normally.
    Done(ReplyMeta),
}

/// Why a reply could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    /// Worth another attempt (rate limit, overload, timeout, dropped stream).
    #[error("{kind}: {message}")]
    Retryable {
        kind: &'static str,
        message: String,
        /// The provider's own retry delay, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The same request would fail again (rejected, blocked, misconfigured).
    #[error("{code}: {message}")]
    Permanent { code: &'static str, message: String },
}

pub type ReplyStream = BoxStream<'static, Result<Chunk, AiError>>;

#[async_trait]
pub trait AiProvider: Send + Sync {
    /// Starts a reply. Errors before the first chunk come back here; later ones in the stream.
    async fn stream_reply(&self, conversation: Conversation) -> Result<ReplyStream, AiError>;

    /// A short answer in one piece (a chatroom's title): by default the streamed reply,
    /// gathered.
    async fn complete(&self, conversation: Conversation) -> Result<String, AiError> {
        use futures::StreamExt;
        let mut stream = self.stream_reply(conversation).await?;
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk? {
                Chunk::Delta(delta) => text.push_str(&delta),
                Chunk::Done(_) => return Ok(text),
            }
        }
        Err(AiError::Retryable {
            kind: "dropped_stream",
            message: "the answer ended early".into(),
            retry_after: None,
        })
    }
}
