//! `TestApp`: one gemchat per test on a fresh database (a temporary SQLite file, or a fresh
//! schema in `TEST_DATABASE_URL`), driven in-process through the real router. The rest of the
//! harness, by concern: `db` (databases, `backend_tests!`), `client` (requests and
//! responses), `sse` (an event-stream client), `servers` (private Redis and PostgreSQL
//! servers, a TCP relay to cut).

mod client;
mod db;
mod files;
mod servers;
mod sse;

use std::sync::Arc;

use axum::Router;
use gemchat::app::App;
use gemchat::clock::ManualClock;
use gemchat::config::Config;
use serde_json::{Value, json};
use uuid::Uuid;

pub use client::TestResponse;
pub use db::*;
pub use files::{FreshBucket, Part, multipart, s3_url};
pub use servers::{PrivatePostgres, PrivateRedis, Relay};
pub use sse::{SseClient, apply_deltas};

pub struct TestApp {
    pub app: Arc<App>,
    pub router: Router,
    pub clock: Arc<ManualClock>,
    /// The database, owned by the first app of a group (siblings share it).
    _db: Option<TestDb>,
}

/// The first app of a group removes the data folder (uploads) its test used.
impl Drop for TestApp {
    fn drop(&mut self) {
        if self._db.is_some() {
            let _ = std::fs::remove_dir_all(&self.app.config().data_dir);
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_custom(backend, configure, None).await
    }

    /// An app whose AI provider is `ai` (a test double driven by the test).
    pub async fn spawn_with_ai(backend: Backend, ai: Arc<dyn gemchat::ai::AiProvider>) -> Self {
        Self::spawn_custom(backend, |_| {}, Some(ai)).await
    }

    async fn spawn_custom(
        backend: Backend,
        configure: impl FnOnce(&mut Config),
        ai: Option<Arc<dyn gemchat::ai::AiProvider>>,
    ) -> Self {
        install_crypto();
        let db = TestDb::create(backend).await;
        let mut config = test_config(&db);
        configure(&mut config);
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let mut builder = App::builder(config, clock.clone());
        if let Some(ai) = ai {
            builder = builder.ai(ai);
        }
        let app = Arc::new(builder.build().await.expect("building the app"));
        let router = gemchat::http::router::router(app.clone());
        Self {
            app,
            router,
            clock,
            _db: Some(db),
        }
    }

    /// Another process of the same deployment: a second `App` on the same database, with its
    /// own caches and connections, configured by `configure` on top of the test defaults.
    pub async fn sibling(&self, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.app.config().clone();
        configure(&mut config);
        let clock = Arc::clone(&self.clock);
        let app = Arc::new(
            App::build(config, clock.clone())
                .await
                .expect("building the app"),
        );
        let router = gemchat::http::router::router(app.clone());
        Self {
            app,
            router,
            clock,
            _db: None,
        }
    }

    /// Serves the app on a loopback port until the returned guard is dropped.
    pub async fn serve_tcp(&self) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Arc::clone(&self.app);
        let server = tokio::spawn(async move {
            let _ = gemchat::http::router::serve(app, listener, std::future::pending()).await;
        });
        (addr, server)
    }
    /// Signs up `mobile` (optionally with a password) and returns the user.
    pub async fn signup(&self, mobile: &str, password: Option<&str>) -> Value {
        let mut body = json!({"mobile_number": mobile, "name": "Test User"});
        if let Some(password) = password {
            body["password"] = json!(password);
        }
        let response = self.post("/auth/signup", None, body).await;
        response.assert_status(201)["user"].clone()
    }

    /// Requests a code of the given kind (`send-otp` or `forgot-password`) and returns it.
    pub async fn request_code(&self, route: &str, mobile: &str) -> String {
        let response = self
            .post(
                &format!("/auth/{route}"),
                None,
                json!({"mobile_number": mobile}),
            )
            .await;
        let code = response.assert_status(200)["otp"]
            .as_str()
            .map(str::to_owned);
        code.expect("the code is in the response")
    }

    /// Signs in `mobile` with a one-time code and returns the token.
    pub async fn otp_login(&self, mobile: &str) -> String {
        let code = self.request_code("send-otp", mobile).await;
        let response = self
            .post(
                "/auth/verify-otp",
                None,
                json!({"mobile_number": mobile, "otp": code}),
            )
            .await;
        token_of(&response)
    }

    /// A new account, signed in; returns (token, user).
    pub async fn new_user(&self) -> (String, Value) {
        let mobile = random_mobile();
        let user = self.signup(&mobile, None).await;
        (self.otp_login(&mobile).await, user)
    }

    /// A new account holding the admin role (granted as the command line does); returns
    /// (token, user).
    pub async fn new_admin(&self) -> (String, Value) {
        let (token, user) = self.new_user().await;
        let mobile = gemchat::users::model::MobileNumber::parse(
            user["mobile_number"].as_str().unwrap_or_default(),
            phonenumber::country::Id::IN,
        )
        .expect("a stored number");
        let granted = self
            .app
            .store()
            .admin
            .set_admin(&mobile, true, self.clock_now())
            .await
            .expect("granting the role");
        assert_eq!(granted, Some(true));
        (token, user)
    }

    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use gemchat::clock::Clock;
        self.clock.now()
    }

    /// Runs queued jobs one at a time until none is due.
    pub async fn drain_jobs(&self) -> usize {
        let mut ran = 0;
        while gemchat::jobs::worker::run_next(&self.app, &gemchat::job_handlers())
            .await
            .expect("running a job")
        {
            ran += 1;
        }
        ran
    }

    /// Starts the job worker over this app in the background, as `serve` runs its own.
    pub fn start_worker(&self) -> RunningWorker {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(gemchat::jobs::worker::run_until_stopped(
            Arc::clone(&self.app),
            gemchat::job_handlers(),
            stopped,
        ));
        RunningWorker { stop, task }
    }

    /// Creates a chatroom and returns its id.
    pub async fn chatroom(&self, token: &str, name: &str) -> String {
        let created = self
            .post("/chatroom", Some(token), json!({"name": name}))
            .await;
        let id = created.assert_status(201)["id"].as_str().map(str::to_owned);
        id.expect("a chatroom id")
    }

    /// Sends a prompt and returns the 202 body.
    pub async fn send_message(&self, token: &str, room: &str, content: &str) -> Value {
        let sent = self
            .post(
                &format!("/chatroom/{room}/message"),
                Some(token),
                json!({"content": content}),
            )
            .await;
        sent.assert_status(202).clone()
    }

    /// Lets the send cooldown pass.
    pub fn after_cooldown(&self) {
        self.clock.advance(chrono::Duration::seconds(31));
    }
}

#[track_caller]
pub fn token_of(response: &TestResponse) -> String {
    let body = response.assert_status(200);
    body["token"].as_str().expect("a token").to_owned()
}

/// A valid Indian mobile number nobody else in this run uses.
pub fn random_mobile() -> String {
    format!("+9198{:08}", rand_u32() % 100_000_000)
}

fn rand_u32() -> u32 {
    let bytes = Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// rustls needs a process-wide crypto provider before any TLS client is built.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Polls `check` every 10 ms until it holds, failing the test after `within`.
pub async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
    loop {
        tick.tick().await;
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
    }
}

/// The reply a claimed reply job produces.
pub fn reply_of(job: &gemchat::jobs::queue::ClaimedJob) -> gemchat::replies::model::ReplyJob {
    job.payload().expect("a reply job")
}

/// A job worker started by [`TestApp::start_worker`].
pub struct RunningWorker {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    /// Asks the worker to stop and waits until it has (its grace period spent, what it still
    /// held handed back): within 10 s.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(std::time::Duration::from_secs(10), self.task)
            .await
            .expect("the worker stops within 10 s")
            .expect("the worker's task");
    }
}
