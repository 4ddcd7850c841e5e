//! The offline `echo` provider: answers deterministically, in a few chunks, saying that it is
//! offline. The default when no Gemini key is configured. Its chunks can be paced
//! (`ECHO_CHUNK_DELAY_MS`) so that a client sees a reply stream in, as it would from Gemini.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use super::estimate_tokens;
use super::{AiError, AiProvider, Chunk, Conversation, ReplyStream};
use crate::messages::model::{ReplyMeta, Role};

/// The offline provider; `pace` is the pause before each chunk after the first.
pub(crate) struct EchoProvider {
    pub(crate) pace: Duration,
}

/// The reply `echo` gives to a conversation.
pub(crate) fn reply_text(conversation: &Conversation) -> String {
    let asked = conversation
        .turns
        .iter()
        .rev()
        .find(|turn| turn.role == Role::User);
    let prompt = asked.map_or("", |turn| turn.text.as_str());
    let files: Vec<String> = asked
        .into_iter()
        .flat_map(|turn| &turn.files)
        .map(|file| {
            format!(
                "{} ({}, {} bytes)",
                file.name,
                file.mime_type,
                file.data.len()
            )
        })
        .collect();
    let attached = if files.is_empty() {
        String::new()
    } else {
        format!(" You attached: {}.", files.join(", "))
    };
    format!(
        "(offline echo provider: no AI model is configured, so this reply is generated \
         locally) You said: {prompt}{attached}"
    )
}

/// Splits `text` into word-aligned pieces of at least 24 characters, about a dozen at most.
fn chunks(text: &str) -> Vec<String> {
    let total = text.chars().count();
    let size = total.div_ceil(12).max(24);
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut len = 0;
    for c in text.chars() {
        piece.push(c);
        len += 1;
        if len >= size && c.is_whitespace() {
            pieces.push(std::mem::take(&mut piece));
            len = 0;
        }
    }
    if !piece.is_empty() || pieces.is_empty() {
        pieces.push(piece);
    }
    pieces
}

#[async_trait]
impl AiProvider for EchoProvider {
    /// A title is the first words of the prompt's first line: deterministic, offline.
    async fn complete(&self, conversation: Conversation) -> Result<String, AiError> {
        let prompt = conversation
            .turns
            .iter()
            .find(|turn| turn.role == Role::User)
            .map_or("", |turn| turn.text.as_str());
        let line = prompt
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("");
        let words: Vec<&str> = line.split_whitespace().take(6).collect();
        Ok(words.join(" "))
    }

    async fn stream_reply(&self, conversation: Conversation) -> Result<ReplyStream, AiError> {
        let text = reply_text(&conversation);
        let output_tokens = estimate_tokens(&text);
        let prompt_tokens = conversation
            .turns
            .iter()
            .map(|turn| estimate_tokens(&turn.text))
            .fold(estimate_tokens(&conversation.system), u32::saturating_add);
        let mut pieces: Vec<Result<Chunk, AiError>> = chunks(&text)
            .into_iter()
            .map(|c| Ok(Chunk::Delta(c)))
            .collect();
        pieces.push(Ok(Chunk::Done(ReplyMeta {
            finish_reason: Some("STOP".into()),
            model_version: Some("echo".into()),
            // Estimates: echo calls no model, but shows the usage a reply would carry.
            prompt_tokens: Some(prompt_tokens),
            output_tokens: Some(output_tokens),
            total_tokens: Some(prompt_tokens.saturating_add(output_tokens)),
            thinking_tokens: Some(0),
            cached_tokens: Some(0),
        })));
        let pace = self.pace;
        if pace.is_zero() {
            return Ok(futures::stream::iter(pieces).boxed());
        }
        Ok(futures::stream::iter(pieces.into_iter().enumerate())
            .then(move |(i, piece)| async move {
                if i > 0 {
                    tokio::time::sleep(pace).await;
                }
                piece
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_streams_a_deterministic_offline_reply() {
        let conversation = Conversation {
            model: None,
            system: "be brief".into(),
            turns: vec![super::super::Turn::text(Role::User, "héllo there")],
        };
        let echo = EchoProvider {
            pace: Duration::ZERO,
        };
        let stream = echo.stream_reply(conversation.clone()).await;
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

    #[test]
    fn chunks_are_word_aligned_and_few() {
        for text in ["", "short", &"word ".repeat(2000), &"ü".repeat(100)] {
            let pieces = chunks(text);
            assert_eq!(pieces.concat(), text);
            assert!(pieces.len() <= 13, "{} pieces", pieces.len());
            for piece in &pieces[..pieces.len() - 1] {
                assert!(piece.ends_with(char::is_whitespace));
            }
        }
    }
}
