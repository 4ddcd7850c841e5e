//! Degraded modes: PostgreSQL and Redis going away and coming back while gemchat runs. Two
//! ways: a network partition (a TCP relay between gemchat and the server, taken down and up),
//! and the server itself stopping and starting (a PostgreSQL or Redis of the test's own).

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    Backend, PrivatePostgres, PrivateRedis, Relay, SseClient, TestApp, TestDb, eventually,
    postgres_url, redis_url,
};

/// An app whose PostgreSQL database (of its own) is reached through a relay the test can cut
/// (the SQLite database it is built with is replaced by this URL); `None` without PostgreSQL.
async fn through_a_relay() -> Option<(TestApp, Relay, TestDb)> {
    let admin = postgres_url()?;
    let db = TestDb::create(Backend::Postgres).await;
    let target = url::Url::parse(&admin)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(5432))))
        .expect("a host in TEST_DATABASE_URL");
    let relay = Relay::start(target).await;
    let mut through_relay = url::Url::parse(&db.url).expect("url");
    through_relay.set_port(Some(relay.port)).expect("port");
    let url = through_relay.to_string();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url).await;
    Some((app, relay, db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_service_resumes_by_itself() {
    let Some((app, relay, db)) = through_a_relay().await else {
        return;
    };
    let (token, _) = app.new_user().await;
    app.chatroom(&token, "before").await;

    relay.down().await;
    let list = app.get("/chatroom", Some(&token)).await;
    list.assert_problem(503, "unavailable");
    let created = app
        .post(
            "/chatroom",
            Some(&token),
            serde_json::json!({"name": "during"}),
        )
        .await;
    created.assert_problem(503, "unavailable");
    let ready = app.get("/ready", None).await;
    ready.assert_problem(503, "unavailable");
    assert!(
        ready.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("database"))
    );
    app.get("/health", None).await.assert_status(200);

    relay.up();
    eventually(Duration::from_secs(30), "gemchat serves again", || async {
        app.get("/ready", None).await.status.as_u16() == 200
    })
    .await;
    app.chatroom(&token, "after").await;
    let list = app.get("/chatroom", Some(&token)).await;
    assert_eq!(
        list.assert_status(200)["chatrooms"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    drop(db);
}

/// Several requests with one token whose session is not cached yet, while the database is
/// away: they share one session check, and every one of them is a 503 (found by `bench/chaos`:
/// those that waited on another's check got a 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sharing_a_session_check_during_an_outage_all_answer_503() {
    let Some((app, relay, db)) = through_a_relay().await else {
        return;
    };
    let mobile = crate::harness::random_mobile();
    app.signup(&mobile, Some("correct horse battery")).await;
    // A session that has never been checked, so it is not cached.
    let login = app
        .post(
            "/auth/login",
            None,
            json!({"mobile_number": mobile, "password": "correct horse battery"}),
        )
        .await;
    let token = crate::harness::token_of(&login);

    relay.down().await;
    let answers =
        futures::future::join_all((0..8).map(|_| app.get("/chatroom", Some(&token)))).await;
    for answer in answers {
        answer.assert_problem(503, "unavailable");
    }
    relay.up();
    drop(db);
}

/// PostgreSQL itself crashing, and later shutting down cleanly, under a running gemchat (a
/// server of the test's own): 503 while it is away, service back without a restart, and what
/// was accepted before the crash (a prompt and its queued reply) is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_answers_503_then_serves_without_a_restart() {
    if postgres_url().is_none() {
        return;
    }
    let pg = PrivatePostgres::start().await;
    let url = pg.url.clone();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "before").await;
    app.send_message(&token, &room, "accepted before the crash")
        .await;

    for mode in ["immediate", "fast"] {
        pg.stop(mode).await;
        // (The chatroom list may still come from the cache: a history page must not.)
        app.get(&format!("/chatroom/{room}/messages"), Some(&token))
            .await
            .assert_problem(503, "unavailable");
        app.post(
            &format!("/chatroom/{room}/message"),
            Some(&token),
            json!({"content": "while the database is away"}),
        )
        .await
        .assert_problem(503, "unavailable");
        let ready = app.get("/ready", None).await;
        ready.assert_problem(503, "unavailable");
        assert!(
            ready.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("database")),
            "{mode}: {}",
            ready.body
        );
        app.get("/health", None).await.assert_status(200);
        // The gate closes (once its probe failed): requests then fail at once instead of
        // waiting for the pool.
        eventually(Duration::from_secs(10), "the gate closes", || async {
            app.app.database_gate().is_closed()
        })
        .await;
        // Only the routes that need the database sit behind the gate: probes, metrics, the
        // docs and the web client still answer.
        for path in [
            "/health",
            "/metrics",
            "/openapi.json",
            "/docs/",
            "/",
            "/assets/app.js",
        ] {
            let answer = app.get(path, None).await;
            assert_eq!(
                answer.status.as_u16(),
                200,
                "{mode}: {path} during the outage"
            );
        }
        app.get(&format!("/chatroom/{room}/messages"), Some(&token))
            .await
            .assert_problem(503, "unavailable");

        pg.resume().await;
        eventually(Duration::from_secs(30), "gemchat serves again", || async {
            app.get("/ready", None).await.status.as_u16() == 200
        })
        .await;
        assert!(!app.app.database_gate().is_closed());
        app.get("/chatroom", Some(&token)).await.assert_status(200);
    }

    // The prompt answered 202 before the crash, and its job, survived it.
    assert_eq!(app.drain_jobs().await, 1);
    let page = app
        .get(&format!("/chatroom/{room}/messages"), Some(&token))
        .await;
    let messages = page.assert_status(200)["messages"].clone();
    assert_eq!(messages.as_array().map(Vec::len), Some(2), "{messages}");
    assert_eq!(messages[0]["content"], "accepted before the crash");
    assert_eq!(messages[1]["status"], "completed");
}

fn names(list: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = list["chatrooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|room| room["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Redis stopped under a running gemchat: lists and messages keep working from the database,
/// a listener on this process still sees the reply, and `/ready` names Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_succeed_from_the_database_while_redis_is_down() {
    if redis_url().is_none() {
        return;
    }
    let mut redis = PrivateRedis::start().await;
    let url = redis.url.clone();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(url)).await;
    let (addr, _server) = app.serve_tcp().await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "before").await;
    assert_eq!(
        names(app.get("/chatroom", Some(&token)).await.assert_status(200)),
        ["before"]
    );

    redis.stop().await;
    app.chatroom(&token, "during").await;
    let list = app.get("/chatroom", Some(&token)).await;
    assert_eq!(names(list.assert_status(200)), ["before", "during"]);
    let link = app.app.redis().cloned().expect("a Redis link");
    assert!(!link.is_up(), "the breaker opened: Redis calls are skipped");

    let mut events = SseClient::connect(addr, &room, &token, None).await;
    app.send_message(&token, &room, "still works").await;
    assert_eq!(app.drain_jobs().await, 1);
    let seen = events.until("reply.completed").await;
    assert!(seen.iter().any(|e| e.event == "message.created"));
    let page = app
        .get(&format!("/chatroom/{room}/messages"), Some(&token))
        .await;
    assert_eq!(
        page.assert_status(200)["messages"][1]["status"],
        "completed"
    );
    let ready = app.get("/ready", None).await;
    ready.assert_problem(503, "unavailable");
    assert!(
        ready.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("redis"))
    );
}

/// A partition from Redis (which keeps its data): writes made meanwhile could not invalidate
/// the cached list, so when Redis answers again the cache must not serve the list from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_partition_cannot_leave_a_stale_list_behind() {
    if redis_url().is_none() {
        return;
    }
    let redis = PrivateRedis::start().await;
    let target = redis.url.trim_start_matches("redis://").to_owned();
    let relay = Relay::start(target).await;
    let url = format!("redis://127.0.0.1:{}", relay.port);
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(url)).await;
    let (token, _) = app.new_user().await;
    app.chatroom(&token, "before").await;
    for _ in 0..2 {
        // The first read fills the cache, the second is served from it.
        assert_eq!(
            names(app.get("/chatroom", Some(&token)).await.assert_status(200)),
            ["before"]
        );
    }

    relay.down().await;
    app.chatroom(&token, "during").await;
    assert_eq!(
        names(app.get("/chatroom", Some(&token)).await.assert_status(200)),
        ["before", "during"]
    );

    relay.up();
    let link = app.app.redis().cloned().expect("a Redis link");
    eventually(
        Duration::from_secs(30),
        "the Redis link is back",
        || async { link.is_up() },
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            names(app.get("/chatroom", Some(&token)).await.assert_status(200)),
            ["before", "during"]
        );
    }
    app.get("/ready", None).await.assert_status(200);
}

/// Redis loses its data (a restart) while a reply streams: the worker writes the reply's
/// progress whole again at its next delta, and a listener that joined meanwhile, and so got no
/// snapshot, is sent what it lacks before that delta, never a reply with a hole (found by
/// `bench/chaos`: listeners assembled replies missing their start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_streaming_while_redis_loses_its_data_reaches_a_new_listener_whole() {
    if redis_url().is_none() {
        return;
    }
    let redis = PrivateRedis::start().await;
    let url = redis.url.clone();
    let gemini = crate::gemini_stream::StreamingGemini::start().await;
    let uri = gemini.uri.clone();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.redis_url = Some(url);
        c.ai_provider = Some(gemchat::config::AiProviderKind::Gemini);
        c.gemini_api_key = Some(gemchat::config::Secret::new("test-key"));
        c.gemini_base_url = uri;
    })
    .await;
    let (addr, _server) = app.serve_tcp().await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "story").await;
    let sent = app.send_message(&token, &room, "tell me a story").await;
    let reply_id = sent["reply"]["id"].clone();
    let reply = gemchat::messages::model::MessageId(
        reply_id
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_default(),
    );
    let worker_app = std::sync::Arc::clone(&app.app);
    let worker = tokio::spawn(async move {
        gemchat::jobs::worker::run_next(&worker_app, &gemchat::job_handlers()).await
    });
    let call = gemini.next_call().await;
    call.send("Once upon ").await;
    eventually(Duration::from_secs(5), "the delta was recorded", || async {
        app.app.progress().get(reply).await.as_deref() == Some("Once upon ")
    })
    .await;

    let port = redis.url.rsplit(':').next().unwrap_or_default().to_owned();
    let flushed = tokio::process::Command::new("redis-cli")
        .args(["-p", &port, "FLUSHALL"])
        .output()
        .await
        .expect("redis-cli runs");
    assert!(flushed.status.success());
    assert_eq!(app.app.progress().get(reply).await, None, "Redis lost it");
    let mut events = SseClient::connect(addr, &room, &token, None).await;

    call.send("a time").await;
    eventually(
        Duration::from_secs(5),
        "the progress is whole again",
        || async { app.app.progress().get(reply).await.as_deref() == Some("Once upon a time") },
    )
    .await;
    let delta = loop {
        let event = events.next().await;
        if event.event == "reply.delta" {
            break event;
        }
    };
    assert_eq!(delta.data["message_id"], reply_id);
    assert_eq!(
        (delta.data["offset"].as_u64(), delta.data["delta"].as_str()),
        (Some(0), Some("Once upon a time")),
        "the listener gets the reply from its start"
    );
    call.finish().await;
    assert!(worker.await.expect("the worker").expect("a job ran"));
    let done = events.until("reply.completed").await;
    let completed = done.last().expect("reply.completed");
    assert_eq!(completed.data["content"], "Once upon a time");
}

/// An API process and a worker process sharing a PostgreSQL database and a Redis server,
/// the worker's link to Redis through a relay the test can cut, and a streaming fake Gemini.
/// The API serves on a loopback port, to a user with one room.
struct FarWorker {
    api: TestApp,
    worker: TestApp,
    relay: Relay,
    gemini: crate::gemini_stream::StreamingGemini,
    addr: std::net::SocketAddr,
    token: String,
    room: String,
    _server: tokio::task::JoinHandle<()>,
    _redis: PrivateRedis,
    _db: TestDb,
}

impl FarWorker {
    async fn start() -> Self {
        let db = TestDb::create(Backend::Postgres).await;
        let redis = PrivateRedis::start().await;
        let relay = Relay::start(redis.url.trim_start_matches("redis://").to_owned()).await;
        let gemini = crate::gemini_stream::StreamingGemini::start().await;
        let (db_url, redis_direct) = (db.url.clone(), redis.url.clone());
        let api = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.database_url = db_url;
            c.redis_url = Some(redis_direct);
        })
        .await;
        let (db_url, uri) = (db.url.clone(), gemini.uri.clone());
        let through_relay = format!("redis://127.0.0.1:{}", relay.port);
        let worker = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.database_url = db_url;
            c.redis_url = Some(through_relay);
            c.ai_provider = Some(gemchat::config::AiProviderKind::Gemini);
            c.gemini_api_key = Some(gemchat::config::Secret::new("test-key"));
            c.gemini_base_url = uri;
        })
        .await;
        let (addr, server) = api.serve_tcp().await;
        let (token, _) = api.new_user().await;
        let room = api.chatroom(&token, "far away").await;
        Self {
            api,
            worker,
            relay,
            gemini,
            addr,
            token,
            room,
            _server: server,
            _redis: redis,
            _db: db,
        }
    }

    /// A listener on the room's event stream, through the API process.
    async fn listen(&self, last_event_id: Option<&str>) -> SseClient {
        SseClient::connect(self.addr, &self.room, &self.token, last_event_id).await
    }

    async fn send(&self, content: &str) -> serde_json::Value {
        self.api
            .send_message(&self.token, &self.room, content)
            .await
    }

    /// Runs the next job on the worker process, in the background.
    fn run_next(&self) -> tokio::task::JoinHandle<anyhow::Result<bool>> {
        let worker_app = std::sync::Arc::clone(&self.worker.app);
        tokio::spawn(async move {
            gemchat::jobs::worker::run_next(&worker_app, &gemchat::job_handlers()).await
        })
    }

    /// Sends a prompt and produces its reply, "Hello there", its end announced only on the
    /// worker's process (its link to Redis cut meanwhile, then restored), after the room's
    /// listener saw its deltas. Returns what the send answered.
    async fn prompt_answered_unannounced(&self, events: &mut SseClient) -> serde_json::Value {
        let sent = self.send("hello").await;
        let running = self.run_next();
        let call = self.gemini.next_call().await;
        call.send("Hello ").await;
        call.send("there").await;
        loop {
            let event = events.next().await;
            if event.event == "reply.delta" && event.data["delta"] == "there" {
                break;
            }
        }
        self.relay.down().await;
        call.finish().await;
        assert!(running.await.expect("the worker").expect("a job ran"));
        self.relay.up();
        sent
    }
}

/// A reply that ends while its worker cannot reach Redis is announced only on the worker's
/// process; a listener on another process, whose own link is fine and so gets no gap, still
/// sees the end: a reply silent for 5 s is looked up in the database (found by `bench/chaos`,
/// where a reply finished during Redis's restart and its listeners waited forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_ended_where_redis_was_unreachable_still_reaches_other_processes_listeners() {
    if redis_url().is_none() || postgres_url().is_none() {
        return;
    }
    let far = FarWorker::start().await;
    let mut events = far.listen(None).await;
    let sent = far.prompt_answered_unannounced(&mut events).await;
    let ended = events.until("reply.completed").await;
    let completed = ended.last().expect("reply.completed");
    assert_eq!(completed.data["id"], sent["reply"]["id"]);
    assert_eq!(completed.data["content"], "Hello there");
}

/// The same lost end, met by a client that then heard the room's next prompt and resumed at
/// once (before its stream looked the silent reply up): the resume sends the end again, since
/// it came shortly before the last event the client saw (found by `bench/chaos`, where
/// listeners reconnect every few seconds as API processes are killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_end_is_sent_again_to_a_client_that_resumes_after_later_events() {
    if redis_url().is_none() || postgres_url().is_none() {
        return;
    }
    let far = FarWorker::start().await;
    let mut events = far.listen(None).await;
    let first = far.prompt_answered_unannounced(&mut events).await;
    // The next prompt comes a little later than the reply's end.
    far.api.clock.advance(chrono::Duration::seconds(2));
    let second = far.send("and then?").await;
    let created = loop {
        let event = events.next().await;
        assert_ne!(event.event, "reply.completed", "not yet: the end was lost");
        if event.event == "message.created" && event.data["id"] == second["reply"]["id"] {
            break event;
        }
    };
    drop(events);
    let mut resumed = far.listen(created.id.as_deref()).await;
    let replayed = resumed.next().await;
    assert_eq!(replayed.event, "reply.completed");
    assert_eq!(replayed.data["id"], first["reply"]["id"]);
    assert_eq!(replayed.data["content"], "Hello there");
}
