//! The Gemini adapter: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`, the key in
//! `x-goog-api-key` only. Each SSE event is a full `GenerateContentResponse` carrying a text
//! delta; the last one carries `finishReason` and the final `usageMetadata`. Errors are
//! classified as in `spec/gemini.md`: 429/500/503/504 and dropped streams are retried,
//! 400/403/404 and blocked or empty answers fail at once.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::json;

use super::{AiError, AiProvider, Chunk, Conversation, ReplyStream};
use crate::config::Secret;
use crate::messages::model::{ReplyMeta, Role};

/// Longest wait for the connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence between two chunks of a stream (and before the first one).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct GeminiProvider {
    http: reqwest::Client,
    /// The API's base URL, without a trailing slash.
    base: String,
    /// `GEMINI_MODEL`: the model of a conversation that names none.
    model: String,
    /// `:generateContent`, for short answers in one piece (titles).
    complete_url: String,
    /// 2.5 Flash models can think for nothing (a cheaper, quicker short answer).
    can_skip_thinking: bool,
    api_key: Secret,
    idle_timeout: Duration,
}

impl GeminiProvider {
    pub(crate) fn new(base_url: &str, model: &str, api_key: Secret) -> anyhow::Result<Self> {
        Self::with_idle_timeout(base_url, model, api_key, IDLE_TIMEOUT)
    }

    pub(crate) fn with_idle_timeout(
        base_url: &str,
        model: &str,
        api_key: Secret,
        idle_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        let base = base_url.trim_end_matches('/');
        Ok(Self {
            http,
            base: base.to_owned(),
            model: model.to_owned(),
            complete_url: format!("{base}/v1beta/models/{model}:generateContent"),
            can_skip_thinking: model.contains("flash"),
            api_key,
            idle_timeout,
        })
    }
}

/// The request body for a conversation. Consecutive turns of one role are merged, since the
/// history can hold two prompts in a row when a reply between them failed.
pub(crate) fn request_body(conversation: &Conversation) -> serde_json::Value {
    let mut contents: Vec<(Role, Vec<serde_json::Value>)> = Vec::new();
    for turn in &conversation.turns {
        let text = json!({"text": turn.text});
        // One part per file beside the text (gemini.md §11).
        let files = turn.files.iter().map(|file| {
            json!({"inlineData": {
                "mimeType": file.mime_type,
                "data": base64::engine::general_purpose::STANDARD.encode(&file.data),
            }})
        });
        let parts = std::iter::once(text).chain(files);
        match contents.last_mut() {
            Some((role, earlier)) if *role == turn.role => earlier.extend(parts),
            _ => contents.push((turn.role, parts.collect())),
        }
    }
    json!({
        "systemInstruction": {"parts": [{"text": conversation.system}]},
        "contents": contents
            .into_iter()
            .map(|(role, parts)| json!({"role": role.as_str(), "parts": parts}))
            .collect::<Vec<_>>(),
    })
}

#[async_trait]
impl AiProvider for GeminiProvider {
    async fn complete(&self, conversation: Conversation) -> Result<String, AiError> {
        self.complete_once(&conversation).await
    }

    async fn stream_reply(&self, conversation: Conversation) -> Result<ReplyStream, AiError> {
        let model = conversation
            .model
            .clone()
            .unwrap_or_else(|| self.model.clone());
        let url = format!(
            "{}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            self.base
        );
        let response = self.post(&url, &request_body(&conversation)).await?;
        let status = response.status();
        if !status.is_success() {
            let body = tokio::time::timeout(self.idle_timeout, response.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(classify(status.as_u16(), &body));
        }
        let bytes = response
            .bytes_stream()
            .map(|r| r.map_err(|err| without_url(&err)))
            .boxed();
        // A reply names the model asked when Gemini's answer names none.
        let replies = sse_replies(bytes, self.idle_timeout).map(move |chunk| match chunk {
            Ok(Chunk::Done(mut meta)) => {
                meta.model_version.get_or_insert_with(|| model.clone());
                Ok(Chunk::Done(meta))
            }
            other => other,
        });
        Ok(replies.boxed())
    }
}

impl GeminiProvider {
    /// Posts `body` with the key in its header; the response once its headers are in.
    async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, AiError> {
        let request = self
            .http
            .post(url)
            .header("x-goog-api-key", self.api_key.expose())
            .json(body)
            .send();
        tokio::time::timeout(self.idle_timeout, request)
            .await
            .map_err(|_| timeout())?
            .map_err(|err| AiError::Retryable {
                kind: "unreachable",
                message: format!("cannot reach Gemini: {}", without_url(&err)),
                retry_after: None,
            })
    }

    /// `generateContent` with a small output budget, thinking off where the model allows.
    async fn complete_once(&self, conversation: &Conversation) -> Result<String, AiError> {
        let mut body = request_body(conversation);
        body["generationConfig"] = json!({"maxOutputTokens": 32});
        if self.can_skip_thinking {
            body["generationConfig"]["thinkingConfig"] = json!({"thinkingBudget": 0});
        }
        let response = self.post(&self.complete_url, &body).await?;
        let status = response.status();
        let bytes = tokio::time::timeout(self.idle_timeout, response.bytes())
            .await
            .map_err(|_| timeout())?
            .map_err(|err| AiError::Retryable {
                kind: "dropped_stream",
                message: without_url(&err),
                retry_after: None,
            })?;
        if !status.is_success() {
            return Err(classify(status.as_u16(), &bytes));
        }
        answer_text(&bytes)
    }
}

/// The text of a (non-streamed) `GenerateContentResponse`.
fn answer_text(body: &[u8]) -> Result<String, AiError> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| AiError::Retryable {
            kind: "bad_response",
            message: format!("Gemini's answer is not JSON: {err}"),
            retry_after: None,
        })?;
    if let Some(reason) = answer["promptFeedback"]["blockReason"].as_str() {
        return Err(AiError::Permanent {
            code: "blocked",
            message: format!("the prompt was blocked ({reason})"),
        });
    }
    let text: String = answer["candidates"][0]["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| part["text"].as_str())
        .collect();
    if text.trim().is_empty() {
        return Err(AiError::Permanent {
            code: "empty_response",
            message: "Gemini answered without text".into(),
        });
    }
    Ok(text)
}

fn timeout() -> AiError {
    AiError::Retryable {
        kind: "timeout",
        message: "Gemini did not answer in time".into(),
        retry_after: None,
    }
}

/// reqwest's error text without the URL (which names the model, harmless, but keep it short).
fn without_url(err: &reqwest::Error) -> String {
    let mut err_text = err.to_string();
    if let Some(url) = err.url() {
        err_text = err_text.replace(url.as_str(), "<gemini>");
    }
    err_text
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamEvent {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    error: Option<ErrorBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Default, Deserialize)]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    /// Input, cached tokens included.
    prompt_token_count: Option<u32>,
    candidates_token_count: Option<u32>,
    /// Input, output, tool prompts and thinking.
    total_token_count: Option<u32>,
    /// Thinking, billed as output.
    thoughts_token_count: Option<u32>,
    /// The part of the input served from cache (inside `prompt_token_count`: never add it).
    cached_content_token_count: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorBody>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    code: Option<u16>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

/// Whether a finish reason means the answer was withheld.
fn is_block(reason: &str) -> bool {
    !matches!(reason, "STOP" | "MAX_TOKENS" | "FINISH_REASON_UNSPECIFIED")
}

/// Parses a protobuf Duration string such as `"23s"` or `"29.72s"`.
fn parse_delay(value: &str) -> Option<Duration> {
    let seconds: f64 = value.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Classifies an error answer (HTTP status and body) as retryable or permanent.
pub(crate) fn classify(status: u16, body: &[u8]) -> AiError {
    let error = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.error)
        .unwrap_or_default();
    classify_error(status, &error)
}

fn classify_error(status: u16, error: &ErrorBody) -> AiError {
    let mut retry_after = None;
    let mut daily_quota = false;
    for detail in &error.details {
        let kind = detail
            .get("@type")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        if kind.ends_with("google.rpc.RetryInfo") {
            retry_after = detail
                .get("retryDelay")
                .and_then(|d| d.as_str())
                .and_then(parse_delay);
        }
        if kind.ends_with("google.rpc.QuotaFailure") {
            let violations = detail.get("violations").and_then(|v| v.as_array());
            daily_quota |= violations.into_iter().flatten().any(|v| {
                v.get("quotaId")
                    .and_then(|q| q.as_str())
                    .is_some_and(|q| q.contains("PerDay"))
            });
        }
    }
    let message = if error.message.is_empty() {
        format!("Gemini answered HTTP {status}")
    } else {
        error.message.chars().take(500).collect()
    };
    match status {
        // A daily quota resets in hours: waiting it out inside a job is pointless.
        429 if daily_quota => AiError::Permanent {
            code: "ai_quota_exhausted",
            message,
        },
        429 => AiError::Retryable {
            kind: "rate_limited",
            message,
            retry_after,
        },
        499 | 500 | 502 | 503 | 504 => AiError::Retryable {
            kind: if status == 504 {
                "timeout"
            } else {
                "unavailable"
            },
            message,
            retry_after,
        },
        400..=499 => AiError::Permanent {
            code: "ai_rejected",
            message,
        },
        _ => AiError::Retryable {
            kind: "unavailable",
            message,
            retry_after,
        },
    }
}

struct SseState {
    bytes: BoxStream<'static, Result<Bytes, String>>,
    buffer: BytesMut,
    ready: VecDeque<Result<Chunk, AiError>>,
    meta: ReplyMeta,
    saw_text: bool,
    finished: bool,
    idle_timeout: Duration,
}

/// Turns the SSE byte stream into reply chunks, ending with `Done` or one error.
fn sse_replies(
    bytes: BoxStream<'static, Result<Bytes, String>>,
    idle_timeout: Duration,
) -> ReplyStream {
    let state = SseState {
        bytes,
        buffer: BytesMut::new(),
        ready: VecDeque::new(),
        meta: ReplyMeta::default(),
        saw_text: false,
        finished: false,
        idle_timeout,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                if item.is_err() || matches!(item, Ok(Chunk::Done(_))) {
                    state.finished = true;
                    state.ready.clear();
                }
                return Some((item, state));
            }
            if state.finished {
                return None;
            }
            match tokio::time::timeout(state.idle_timeout, state.bytes.next()).await {
                Err(_) => state.ready.push_back(Err(timeout())),
                Ok(Some(Ok(bytes))) => {
                    state.buffer.extend_from_slice(&bytes);
                    while let Some(event) = next_event(&mut state.buffer) {
                        handle_event(&mut state, &event);
                    }
                }
                Ok(Some(Err(err))) => state.ready.push_back(Err(AiError::Retryable {
                    kind: "dropped_stream",
                    message: format!("the stream broke: {err}"),
                    retry_after: None,
                })),
                Ok(None) => {
                    if !state.buffer.is_empty() {
                        let rest = std::mem::take(&mut state.buffer);
                        handle_event(&mut state, &String::from_utf8_lossy(&rest));
                        if !state.ready.is_empty() {
                            continue;
                        }
                    }
                    let end = match state.meta.finish_reason {
                        Some(_) if state.saw_text => Ok(Chunk::Done(state.meta.clone())),
                        Some(_) => Err(AiError::Permanent {
                            code: "empty_response",
                            message: "Gemini finished without any text".into(),
                        }),
                        None => Err(AiError::Retryable {
                            kind: "dropped_stream",
                            message: "the stream ended before the reply finished".into(),
                            retry_after: None,
                        }),
                    };
                    state.ready.push_back(end);
                }
            }
        }
    })
    .boxed()
}

/// Takes one complete SSE event (its `data:` lines joined) off the front of `buffer`.
fn next_event(buffer: &mut BytesMut) -> Option<String> {
    let text = std::str::from_utf8(buffer).ok().or_else(|| {
        // A multi-byte character may be split across reads; wait for the rest.
        let valid = std::str::from_utf8(buffer).err()?.valid_up_to();
        std::str::from_utf8(&buffer[..valid]).ok()
    })?;
    let (end, separator) = [("\r\n\r\n", 4), ("\n\n", 2)]
        .iter()
        .filter_map(|(sep, len)| text.find(sep).map(|at| (at, *len)))
        .min_by_key(|(at, _)| *at)?;
    let event: String = text[..end]
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect::<Vec<_>>()
        .join("\n");
    let _ = buffer.split_to(end + separator);
    Some(event)
}

fn handle_event(state: &mut SseState, data: &str) {
    if data.trim().is_empty() {
        return;
    }
    let event: StreamEvent = match serde_json::from_str(data) {
        Ok(event) => event,
        Err(err) => {
            state.ready.push_back(Err(AiError::Retryable {
                kind: "dropped_stream",
                message: format!("unreadable stream event: {err}"),
                retry_after: None,
            }));
            return;
        }
    };
    if let Some(error) = &event.error {
        state
            .ready
            .push_back(Err(classify_error(error.code.unwrap_or(500), error)));
        return;
    }
    if let Some(reason) = event.prompt_feedback.and_then(|f| f.block_reason) {
        state.ready.push_back(Err(AiError::Permanent {
            code: "blocked",
            message: format!("The prompt was blocked ({reason})."),
        }));
        return;
    }
    if let Some(usage) = event.usage_metadata {
        state.meta.prompt_tokens = usage.prompt_token_count.or(state.meta.prompt_tokens);
        state.meta.output_tokens = usage.candidates_token_count.or(state.meta.output_tokens);
        state.meta.total_tokens = usage.total_token_count.or(state.meta.total_tokens);
        state.meta.thinking_tokens = usage.thoughts_token_count.or(state.meta.thinking_tokens);
        state.meta.cached_tokens = usage
            .cached_content_token_count
            .or(state.meta.cached_tokens);
    }
    if event.model_version.is_some() {
        state.meta.model_version = event.model_version;
    }
    let Some(candidate) = event.candidates.into_iter().next() else {
        return;
    };
    let text: String = candidate
        .content
        .map(|c| c.parts)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.thought)
        .filter_map(|p| p.text)
        .collect();
    if let Some(reason) = candidate.finish_reason {
        if is_block(&reason) {
            state.ready.push_back(Err(AiError::Permanent {
                code: "blocked",
                message: format!("The reply was withheld by the model ({reason})."),
            }));
            return;
        }
        state.meta.finish_reason = Some(reason);
    }
    if !text.is_empty() {
        state.saw_text = true;
        state.ready.push_back(Ok(Chunk::Delta(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::Turn;

    #[test]
    fn a_short_answer_is_its_text_or_a_classified_refusal() {
        let answer =
            br#"{"candidates":[{"content":{"parts":[{"text":"Monsoon "},{"text":"travel"}]}}]}"#;
        assert_eq!(answer_text(answer), Ok("Monsoon travel".into()));
        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#;
        assert!(matches!(
            answer_text(blocked),
            Err(AiError::Permanent {
                code: "blocked",
                ..
            })
        ));
        let empty = br#"{"candidates":[{"content":{"parts":[]},"finishReason":"MAX_TOKENS"}]}"#;
        assert!(matches!(
            answer_text(empty),
            Err(AiError::Permanent {
                code: "empty_response",
                ..
            })
        ));
        assert!(matches!(
            answer_text(b"<html>"),
            Err(AiError::Retryable { .. })
        ));
    }

    async fn collect(raw: &'static [&'static str]) -> Vec<Result<Chunk, AiError>> {
        let bytes = futures::stream::iter(raw.iter().map(|s| Ok(Bytes::from_static(s.as_bytes()))));
        sse_replies(bytes.boxed(), Duration::from_secs(5))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_stream_yields_deltas_then_done_with_usage() {
        let chunks = collect(&[
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Dune \"}],\"role\":\"model\"}}],\"modelVersion\":\"gemini-2.5-flash\"}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"follows\"}]},\"finishReason\":\"STOP\"}],",
            "\"usageMetadata\":{\"promptTokenCount\":42,\"candidatesTokenCount\":57,\"totalTokenCount\":129,",
            "\"thoughtsTokenCount\":30,\"cachedContentTokenCount\":12}}\r\n\r\n",
        ]).await;
        assert_eq!(chunks[0], Ok(Chunk::Delta("Dune ".into())));
        assert_eq!(chunks[1], Ok(Chunk::Delta("follows".into())));
        let Some(Ok(Chunk::Done(meta))) = chunks.get(2) else {
            panic!("expected Done, got {chunks:?}");
        };
        assert_eq!(meta.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(meta.model_version.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(
            (meta.prompt_tokens, meta.output_tokens, meta.total_tokens),
            (Some(42), Some(57), Some(129))
        );
        assert_eq!(
            (meta.thinking_tokens, meta.cached_tokens),
            (Some(30), Some(12))
        );
        assert_eq!(chunks.len(), 3);
    }

    #[tokio::test]
    async fn a_stream_without_a_finish_reason_is_retryable() {
        let chunks = collect(&[
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Du\"}]}}]}\n\n",
        ])
        .await;
        assert!(matches!(
            chunks.last(),
            Some(Err(AiError::Retryable {
                kind: "dropped_stream",
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn blocked_prompts_and_withheld_replies_are_permanent() {
        let blocked =
            collect(&["data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\n\n"]).await;
        assert!(matches!(
            blocked.as_slice(),
            [Err(AiError::Permanent {
                code: "blocked",
                ..
            })]
        ));
        let withheld = collect(&[
            "data: {\"candidates\":[{\"content\":{\"parts\":[]},\"finishReason\":\"SAFETY\"}]}\n\n",
        ])
        .await;
        assert!(matches!(
            withheld.as_slice(),
            [Err(AiError::Permanent {
                code: "blocked",
                ..
            })]
        ));
        let empty = collect(&["data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n"]).await;
        assert!(matches!(
            empty.as_slice(),
            [Err(AiError::Permanent {
                code: "empty_response",
                ..
            })]
        ));
    }

    #[test]
    fn errors_are_classified_with_their_retry_delay() {
        let rate_limited = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[
            {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel"}]},
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"23.5s"}]}}"#;
        assert_eq!(
            classify(429, rate_limited),
            AiError::Retryable {
                kind: "rate_limited",
                message: "quota".into(),
                retry_after: Some(Duration::from_millis(23_500)),
            }
        );
        let daily = br#"{"error":{"code":429,"message":"q","details":[
            {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}"#;
        assert!(matches!(
            classify(429, daily),
            AiError::Permanent {
                code: "ai_quota_exhausted",
                ..
            }
        ));
        for status in [500, 503, 504] {
            assert!(
                matches!(classify(status, b"{}"), AiError::Retryable { .. }),
                "{status}"
            );
        }
        for status in [400, 403, 404] {
            assert!(
                matches!(
                    classify(status, b"not json"),
                    AiError::Permanent {
                        code: "ai_rejected",
                        ..
                    }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn the_request_merges_consecutive_turns_and_carries_the_system_instruction() {
        let conversation = Conversation {
            model: None,
            system: "Be concise.".into(),
            turns: vec![
                Turn::text(Role::User, "first"),
                Turn::text(Role::User, "second"),
                Turn::text(Role::Model, "answer"),
                Turn::text(Role::User, "third"),
            ],
        };
        let body = request_body(&conversation);
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be concise.");
        assert_eq!(body["contents"].as_array().map(Vec::len), Some(3));
        assert_eq!(body["contents"][0]["role"], "user");
        assert_eq!(body["contents"][0]["parts"][1]["text"], "second");
        assert_eq!(body["contents"][1]["role"], "model");
    }
}
