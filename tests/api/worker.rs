//! The job worker: each job goes to the handler of its kind (a kind no handler here knows
//! waits for a process that has one); at shutdown, jobs in flight finish within the grace
//! period, or are handed back.

use std::sync::Arc;
use std::time::Duration;

use gemchat::app::App;
use gemchat::config::{AiProviderKind, Secret};
use gemchat::jobs::queue::{ClaimedJob, NewJob};
use gemchat::jobs::worker::{Handlers, JobHandler, run_next};
use gemchat::storage::error::StoreError;

use crate::backend_tests;
use crate::fakes::{FakeGemini, GEMINI_KEY, sse_reply};
use crate::harness::{Backend, TestApp, TestDb, eventually};

backend_tests!(
    a_stopping_worker_finishes_a_reply_within_the_grace_period,
    a_stopping_worker_hands_back_what_it_cannot_finish,
    jobs_claimed_ahead_wait_for_a_slot_and_are_handed_back_at_a_stop,
    each_job_goes_to_the_handler_of_its_kind,
);

async fn app_with(backend: Backend, gemini: &FakeGemini, grace: u64) -> TestApp {
    app_with_slots(backend, gemini, grace, None).await
}

/// Talks to `gemini`; a stopping worker waits `grace` seconds; `slots` replies run at once
/// (the default when `None`).
async fn app_with_slots(
    backend: Backend,
    gemini: &FakeGemini,
    grace: u64,
    slots: Option<u32>,
) -> TestApp {
    let uri = gemini.uri();
    TestApp::spawn_with(backend, move |config| {
        config.ai_provider = Some(AiProviderKind::Gemini);
        config.gemini_api_key = Some(Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
        config.worker_shutdown_grace = grace;
        if let Some(slots) = slots {
            config.worker_concurrency = slots;
        }
    })
    .await
}

async fn reply_of(app: &TestApp, token: &str, room: &str) -> serde_json::Value {
    let page = app
        .get(&format!("/chatroom/{room}/messages"), Some(token))
        .await;
    page.assert_status(200)["messages"][1].clone()
}

async fn a_stopping_worker_finishes_a_reply_within_the_grace_period(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["done in time"]).set_delay(Duration::from_millis(300)))
        .mount(&gemini.server)
        .await;
    let app = app_with(backend, &gemini, 30).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "grace").await;
    app.send_message(&token, &room, "hello").await;
    let worker = app.start_worker();
    eventually(Duration::from_secs(10), "Gemini was called", || async {
        !gemini.requests().await.is_empty()
    })
    .await;
    worker.stop().await;
    let reply = reply_of(&app, &token, &room).await;
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["content"], "done in time");
}

async fn a_stopping_worker_hands_back_what_it_cannot_finish(backend: Backend) {
    let gemini = FakeGemini::hanging_once("from the next worker").await;
    let app = app_with(backend, &gemini, 0).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "handback").await;
    app.send_message(&token, &room, "hello").await;
    let worker = app.start_worker();
    eventually(Duration::from_secs(10), "Gemini was called", || async {
        !gemini.requests().await.is_empty()
    })
    .await;
    worker.stop().await;
    assert_eq!(reply_of(&app, &token, &room).await["status"], "pending");
    // Handed back, not left to its lease: another worker takes it at once.
    assert_eq!(app.drain_jobs().await, 1);
    let reply = reply_of(&app, &token, &room).await;
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["content"], "from the next worker");
}

/// The worker claims a batch ahead of its slots: those jobs wait for a slot (no more run at
/// once than `WORKER_CONCURRENCY`), and a worker that stops hands them back with the one it
/// interrupted.
async fn jobs_claimed_ahead_wait_for_a_slot_and_are_handed_back_at_a_stop(backend: Backend) {
    let gemini = FakeGemini::hanging_once("from the next worker").await;
    let app = app_with_slots(backend, &gemini, 0, Some(1)).await;
    let (token, _) = app.new_user().await;
    let mut rooms = Vec::new();
    for name in ["one", "two", "three"] {
        let room = app.chatroom(&token, name).await;
        app.send_message(&token, &room, "hello").await;
        rooms.push(room);
    }
    let worker = app.start_worker();
    // One slot, two more claimed ahead (a batch is one job here, two are held ahead).
    eventually(Duration::from_secs(10), "three jobs claimed", || async {
        let counts = app.app.store().jobs.counts(app.clock_now()).await;
        counts.is_ok_and(|(_, running)| running == 3)
    })
    .await;
    eventually(Duration::from_secs(10), "Gemini was called", || async {
        !gemini.requests().await.is_empty()
    })
    .await;
    worker.stop().await;
    assert_eq!(
        gemini.requests().await.len(),
        1,
        "one slot: the jobs claimed ahead never ran"
    );
    for room in &rooms {
        assert_eq!(reply_of(&app, &token, room).await["status"], "pending");
    }
    assert_eq!(app.drain_jobs().await, 3, "all three were handed back");
    for room in &rooms {
        assert_eq!(reply_of(&app, &token, room).await["status"], "completed");
    }
}

/// On PostgreSQL a prompt queued by one process wakes the workers of every process
/// (`NOTIFY gemchat_jobs`, sent after the commit): the job is there to claim when they wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_prompt_wakes_the_workers_of_other_processes() {
    let Some(db) = TestDb::own_postgres_database().await else {
        return;
    };
    let url = db.url.clone();
    let api = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url.clone()).await;
    let worker = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url).await;
    let (token, _) = api.new_user().await;
    let room = api.chatroom(&token, "chat").await;

    let mut listener = sqlx::postgres::PgListener::connect(&db.url)
        .await
        .expect("listen");
    listener.listen("gemchat_jobs").await.expect("listen");
    api.send_message(&token, &room, "hello").await;
    let woken = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert!(woken.is_ok_and(|n| n.is_ok()), "a notification of the send");
    assert!(
        gemchat::jobs::worker::run_next(&worker.app, &gemchat::job_handlers())
            .await
            .expect("a claim"),
        "the woken process finds the job"
    );
    drop((api, worker));
    drop(db);
}

/// On PostgreSQL a finished reply wakes only its own process's worker (which has a slot free
/// for the room's next job); a worker that stops wakes those of every other process
/// (`NOTIFY gemchat_jobs`), so the rooms whose replies it finished do not wait for a poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_wakes_the_workers_of_other_processes() {
    let Some(db) = TestDb::own_postgres_database().await else {
        return;
    };
    let url = db.url.clone();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "chat").await;
    app.send_message(&token, &room, "first").await;
    app.send_message(&token, &room, "second").await;

    let mut listener = sqlx::postgres::PgListener::connect(&db.url)
        .await
        .expect("listen");
    listener.listen("gemchat_jobs").await.expect("listen");
    let worker = app.start_worker();
    // The second reply waits for the first: this process's own wake-up runs it.
    eventually(
        Duration::from_secs(10),
        "both replies completed",
        || async {
            let page = app
                .get(&format!("/chatroom/{room}/messages"), Some(&token))
                .await;
            let page = page.assert_status(200);
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            messages
                .iter()
                .filter(|m| m["role"] == "model" && m["status"] == "completed")
                .count()
                == 2
        },
    )
    .await;
    worker.stop().await;
    let woken = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert!(
        woken.is_ok_and(|n| n.is_ok()),
        "a notification as the worker stopped"
    );
    drop(app);
    drop(db);
}

/// A handler that records the payloads it ran and finishes each job.
#[derive(Clone, Default)]
struct Recorder(Arc<tokio::sync::Mutex<Vec<serde_json::Value>>>);

#[async_trait::async_trait]
impl JobHandler for Recorder {
    fn kind(&self) -> &'static str {
        "record"
    }

    async fn run(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
        self.0.lock().await.push(job.payload().expect("JSON"));
        app.store().jobs.finish(job).await?;
        Ok(())
    }
}

async fn each_job_goes_to_the_handler_of_its_kind(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let recorder = Recorder::default();
    let handlers = Handlers::default().with(recorder.clone());
    let jobs = &app.app.store().jobs;
    let now = app.clock_now();
    let known = NewJob::new("record", &serde_json::json!({ "note": "hi" }), now);
    let unknown = NewJob::new("from-a-newer-version", &serde_json::json!({}), now);
    jobs.enqueue(&known).await.expect("enqueue");
    jobs.enqueue(&unknown).await.expect("enqueue");
    let run = |handlers| {
        let app = Arc::clone(&app.app);
        async move { run_next(&app, &handlers).await.expect("a job runs") }
    };
    assert!(run(handlers.clone()).await && run(handlers.clone()).await);
    assert!(!run(handlers).await, "nothing else is due");
    assert_eq!(
        *recorder.0.lock().await,
        [serde_json::json!({ "note": "hi" })]
    );
    assert_eq!(
        jobs.counts(now).await.expect("counts"),
        (1, 0),
        "the unknown kind is kept, not dropped"
    );
    let next = jobs
        .next_run_at()
        .await
        .expect("next")
        .expect("a job waits");
    assert!(
        next >= now + chrono::Duration::seconds(59),
        "postponed: {next}"
    );
}
