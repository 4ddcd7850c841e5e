//! The offline `echo` provider: answers deterministically, in a few chunks, saying that it is
//! offline. The default when no Gemini key is configured.

use async_trait::async_trait;
use futures::StreamExt;

use super::{AiError, AiProvider, Chunk, Conversation, ReplyStream};
use crate::messages::model::{ReplyMeta, Role};

pub struct EchoProvider;

/// The reply `echo` gives to a conversation.
pub fn reply_text(conversation: &Conversation) -> String {
    let prompt = conversation
        .turns
        .iter()
        .rev()
        .find(|turn| turn.role == Role::User)
        .map_or("", |turn| turn.text.as_str());
    format!(
        "(offline echo provider: no AI model is configured, so this reply is generated \
         locally) You said: {prompt}"
    )
}

/// Splits `text` into up to four pieces on character boundaries.
fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

#[async_trait]
impl AiProvider for EchoProvider {
    async fn stream_reply(&self, conversation: Conversation) -> Result<ReplyStream, AiError> {
        let text = reply_text(&conversation);
        let output_tokens = u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX);
        let mut pieces: Vec<Result<Chunk, AiError>> = chunks(&text)
            .into_iter()
            .map(|c| Ok(Chunk::Delta(c)))
            .collect();
        pieces.push(Ok(Chunk::Done(ReplyMeta {
            finish_reason: Some("STOP".into()),
            model_version: Some("echo".into()),
            prompt_tokens: None,
            output_tokens: Some(output_tokens),
            total_tokens: None,
        })));
        Ok(futures::stream::iter(pieces).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_streams_a_deterministic_offline_reply() {
        let conversation = Conversation {
            system: "be brief".into(),
            turns: vec![super::super::Turn {
                role: Role::User,
                text: "héllo there".into(),
            }],
        };
        let stream = EchoProvider.stream_reply(conversation.clone()).await;
        let chunks: Vec<_> = match stream {
            Ok(stream) => stream.collect().await,
            Err(_) => Vec::new(),
        };
        let text: String = chunks
            .iter()
            .filter_map(|c| match c {
                Ok(Chunk::Delta(d)) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, reply_text(&conversation));
        assert!(text.contains("offline") && text.ends_with("You said: héllo there"));
        assert!(chunks.len() >= 3, "streams in several chunks");
        assert!(matches!(chunks.last(), Some(Ok(Chunk::Done(_)))));
    }
}
