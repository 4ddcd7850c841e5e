//! `GET /chatroom/{id}/events`: live deltas, and a reconnect that misses nothing.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use gemchat::ai::{AiError, AiProvider, Chunk, Conversation, ReplyStream};
use gemchat::messages::model::ReplyMeta;
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

use crate::backend_tests;
use crate::harness::{Backend, SseClient, TestApp, apply_deltas};

backend_tests!(
    deltas_concatenate_to_the_final_reply,
    a_reconnect_with_last_event_id_misses_nothing,
    a_reconnect_gets_messages_and_replies_that_finished_while_away,
    only_the_owner_may_listen,
);

async fn deltas_concatenate_to_the_final_reply(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (addr, _server) = app.serve_tcp().await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "live").await;
    let mut client = SseClient::connect(addr, &room, &token, None).await;
    let sent = app.send_message(&token, &room, "stream me").await;
    app.drain_jobs().await;

    let events = client.until("reply.completed").await;
    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "message.created")
        .map(|e| &e.data["id"])
        .collect();
    assert_eq!(created, [&sent["message"]["id"], &sent["reply"]["id"]]);
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "reply.delta")
        .filter_map(|e| e.data["delta"].as_str())
        .collect();
    assert!(deltas.len() >= 3, "the reply arrives in pieces: {deltas:?}");
    let completed = events.last().map(|e| e.data.clone()).unwrap_or_default();
    assert_eq!(completed["id"], sent["reply"]["id"]);
    assert_eq!(completed["status"], "completed");
    assert_eq!(
        Some(deltas.concat().as_str()),
        completed["content"].as_str()
    );
    assert!(
        events.iter().all(|e| e.id.is_some()),
        "every event has an id"
    );
}

/// An AI provider whose chunks the test sends one by one.
struct ScriptedProvider {
    chunks: Mutex<Option<mpsc::Receiver<Chunk>>>,
}

#[async_trait]
impl AiProvider for ScriptedProvider {
    async fn stream_reply(&self, _conversation: Conversation) -> Result<ReplyStream, AiError> {
        let receiver = self.chunks.lock().await.take().ok_or(AiError::Permanent {
            code: "script_used",
            message: "the script runs once".into(),
        })?;
        Ok(futures::stream::unfold(receiver, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok(chunk), rx))
        })
        .boxed())
    }
}

async fn a_reconnect_with_last_event_id_misses_nothing(backend: Backend) {
    let (script, chunks) = mpsc::channel(8);
    let provider = Arc::new(ScriptedProvider {
        chunks: Mutex::new(Some(chunks)),
    });
    let app = TestApp::spawn_with_ai(backend, provider).await;
    let (addr, _server) = app.serve_tcp().await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "resume").await;
    let mut first = SseClient::connect(addr, &room, &token, None).await;
    let sent = app.send_message(&token, &room, "tell me").await;
    let reply_id = sent["reply"]["id"].clone();
    let worker_app = Arc::clone(&app.app);
    let worker = tokio::spawn(async move {
        gemchat::jobs::worker::run_next(&worker_app, &gemchat::job_handlers()).await
    });

    script
        .send(Chunk::Delta("Once ".into()))
        .await
        .expect("script");
    let seen = first.until("reply.delta").await;
    let mut content = String::new();
    apply_deltas(&mut content, &seen, &reply_id);
    assert_eq!(content, "Once ");
    let last_id = seen.last().and_then(|e| e.id.clone()).unwrap_or_default();
    drop(first);

    // While the client is away, the reply goes on.
    script
        .send(Chunk::Delta("upon ".into()))
        .await
        .expect("script");
    script
        .send(Chunk::Delta("a time".into()))
        .await
        .expect("script");
    let progressed = || async {
        app.app
            .progress()
            .get(gemchat::messages::model::MessageId(
                reply_id
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or_default(),
            ))
            .await
            .is_some_and(|c| c.ends_with("a time"))
    };
    crate::harness::eventually(
        std::time::Duration::from_secs(10),
        "the worker streamed on",
        progressed,
    )
    .await;

    let mut second = SseClient::connect(addr, &room, &token, Some(&last_id)).await;
    let snapshot = second.next().await;
    assert_eq!(snapshot.event, "reply.delta");
    apply_deltas(&mut content, std::slice::from_ref(&snapshot), &reply_id);
    assert_eq!(
        content, "Once upon a time",
        "the content so far, nothing truncated"
    );

    script
        .send(Chunk::Delta("...".into()))
        .await
        .expect("script");
    script
        .send(Chunk::Done(ReplyMeta {
            finish_reason: Some("STOP".into()),
            ..ReplyMeta::default()
        }))
        .await
        .expect("script");
    let rest = second.until("reply.completed").await;
    apply_deltas(&mut content, &rest, &reply_id);
    let completed = rest.last().map(|e| e.data.clone()).unwrap_or_default();
    assert_eq!(completed["content"], "Once upon a time...");
    assert_eq!(content, "Once upon a time...");
    worker.await.expect("join").expect("the job ran");
}

async fn a_reconnect_gets_messages_and_replies_that_finished_while_away(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (addr, _server) = app.serve_tcp().await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "away").await;
    let mut client = SseClient::connect(addr, &room, &token, None).await;
    let first = app.send_message(&token, &room, "first").await;
    let seen = client.until("message.created").await;
    let last_id = seen.last().and_then(|e| e.id.clone()).unwrap_or_default();
    assert_eq!(
        seen.last().map(|e| e.data["id"].clone()),
        Some(first["message"]["id"].clone())
    );
    drop(client);

    // While away: the first reply finishes and a second exchange happens.
    app.drain_jobs().await;
    let second = app.send_message(&token, &room, "second").await;
    app.drain_jobs().await;

    let mut resumed = SseClient::connect(addr, &room, &token, Some(&last_id)).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let event = resumed.next().await;
        got.push((event.event.clone(), event.data["id"].clone()));
    }
    let expected = [
        ("message.created", &first["reply"]["id"]),
        ("reply.completed", &first["reply"]["id"]),
        ("message.created", &second["message"]["id"]),
        ("message.created", &second["reply"]["id"]),
        ("reply.completed", &second["reply"]["id"]),
    ];
    let expected: Vec<(String, Value)> = expected
        .iter()
        .map(|(k, id)| ((*k).to_owned(), (*id).clone()))
        .collect();
    assert_eq!(got, expected);
}

async fn only_the_owner_may_listen(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, _) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    let room = app.chatroom(&alice, "private").await;
    app.get(&format!("/chatroom/{room}/events"), Some(&bob))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/chatroom/{room}/events"), None)
        .await
        .assert_problem(401, "unauthorized");
}
