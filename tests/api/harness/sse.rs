//! A minimal Server-Sent Events client over a real HTTP connection.

use serde_json::Value;

/// One Server-Sent Event as a client receives it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A minimal SSE client over a real HTTP connection.
pub struct SseClient {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseClient {
    pub async fn connect(
        addr: std::net::SocketAddr,
        room: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Self {
        use futures::StreamExt;
        let mut request = reqwest::Client::new()
            .get(format!("http://{addr}/chatroom/{room}/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("connect to the event stream");
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"))
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), failing the test after 10 s.
    pub async fn next(&mut self) -> SseEvent {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                event.data = serde_json::from_str(&data).unwrap_or(Value::Null);
                return event;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream is open")
                .expect("readable");
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Whether the server ends the stream within `within` (events before the end are
    /// skipped).
    pub async fn ends_within(&mut self, within: std::time::Duration) -> bool {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Events until (and including) the first of type `kind`.
    pub async fn until(&mut self, kind: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.event == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

/// Applies `reply.delta` events the way a client should: a delta at `offset` overwrites from
/// there (offset 0 starts over).
pub fn apply_deltas(content: &mut String, events: &[SseEvent], reply_id: &Value) {
    for event in events
        .iter()
        .filter(|e| e.event == "reply.delta" && &e.data["message_id"] == reply_id)
    {
        let offset = event.data["offset"].as_u64().unwrap_or(0) as usize;
        let kept: String = content.chars().take(offset).collect();
        *content = kept + event.data["delta"].as_str().unwrap_or_default();
    }
}
