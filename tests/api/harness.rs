//! `TestApp`: one gemchat per test on a fresh database (a temporary SQLite file, or a fresh
//! schema in `TEST_DATABASE_URL`), driven in-process through the real router.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use gemchat::app::App;
use gemchat::clock::ManualClock;
use gemchat::config::Config;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use; `None` skips the PostgreSQL half off CI. Under `CI=true`
/// a missing or unreachable server fails the run instead.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && is_ci() {
        panic!("CI=true but TEST_DATABASE_URL is not set: the PostgreSQL suite must run in CI");
    }
    url
}

/// The Redis server tests use; `None` skips the Redis tests off CI, and under `CI=true` a
/// missing `TEST_REDIS_URL` fails the run.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && is_ci() {
        panic!("CI=true but TEST_REDIS_URL is not set: the Redis suite must run in CI");
    }
    url
}

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Runs each named `async fn(Backend)` once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::harness::postgres_url().is_some() {
                        super::$name($crate::harness::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

/// A fresh, empty database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(std::path::PathBuf),
    /// `DROP <what>` on the admin connection (a schema, or a whole database).
    Sql {
        admin_url: String,
        drop: String,
    },
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("gemchat-test-{}", Uuid::now_v7()));
                let url = format!("sqlite://{}/gemchat.db", dir.display());
                Self {
                    url,
                    cleanup: Cleanup::Dir(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_url().expect("PostgreSQL tests need TEST_DATABASE_URL");
                let schema = format!("test_{}", Uuid::now_v7().simple());
                let mut admin = connect_admin(&admin_url).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut admin)
                    .await
                    .expect("creating the test schema");
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{separator}options[search_path]={schema}");
                Self {
                    url,
                    cleanup: Cleanup::Sql {
                        admin_url,
                        drop: format!("DROP SCHEMA {schema} CASCADE"),
                    },
                }
            }
        }
    }

    /// A PostgreSQL database of its own, for tests that watch database-wide traffic (such as
    /// `NOTIFY`), which a schema beside other tests' would mix up.
    pub async fn own_postgres_database() -> Option<Self> {
        let admin_url = postgres_url()?;
        let name = format!("gemchat_test_{}", Uuid::now_v7().simple());
        let mut admin = connect_admin(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Some(Self {
            url: url.to_string(),
            cleanup: Cleanup::Sql {
                admin_url,
                drop: format!("DROP DATABASE {name} WITH (FORCE)"),
            },
        })
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(url).await {
        Ok(conn) => conn,
        Err(err) => panic!("cannot reach PostgreSQL at TEST_DATABASE_URL: {err}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Sql { admin_url, drop } => {
                let (admin_url, drop) = (admin_url.clone(), drop.clone());
                // Drop runs inside the test's runtime; a thread with its own runtime can block.
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    runtime.block_on(async {
                        let mut admin = connect_admin(&admin_url).await;
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                            .execute(&mut admin)
                            .await;
                    });
                })
                .join();
            }
        }
    }
}

/// The configuration every test starts from.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::defaults();
    config.database_url = db.url.clone();
    config.jwt_secret = Some(gemchat::config::Secret::new(JWT_SECRET));
    // Tests drive many requests from one address; the limit tests set their own.
    config.rate_limit_auth_per_minute = 1_000_000;
    config.rate_limit_per_minute = 1_000_000;
    // Replies come at once; tests that need a paced stream use their own provider.
    config.echo_chunk_delay_ms = 0;
    config.data_dir = std::env::temp_dir().join(format!("gemchat-test-data-{}", Uuid::now_v7()));
    config
}

pub struct TestApp {
    pub app: Arc<App>,
    pub router: Router,
    pub clock: Arc<ManualClock>,
    /// The database, owned by the first app of a group (siblings share it).
    _db: Option<TestDb>,
}

/// A response, with its body read (as JSON when it is JSON).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json error with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
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
        let mut app = App::build(config, clock.clone())
            .await
            .expect("building the app");
        if let Some(ai) = ai {
            app.ai = ai;
        }
        let app = Arc::new(app);
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
        let mut config = self.app.config.clone();
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

    /// Sends one request through the router.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(request.expect("valid request")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::POST, path, token, Some(body)).await
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

    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use gemchat::clock::Clock;
        self.clock.now()
    }

    /// Runs queued jobs one at a time until none is due.
    pub async fn drain_jobs(&self) -> usize {
        let mut ran = 0;
        while gemchat::jobs::worker::run_next(&self.app)
            .await
            .expect("running a job")
        {
            ran += 1;
        }
        ran
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

/// A Redis server of the test's own, on a free port, that the test may stop.
pub struct PrivateRedis {
    pub url: String,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = free_port();
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (the Redis suite needs it)");
        let url = format!("redis://127.0.0.1:{port}");
        eventually(
            std::time::Duration::from_secs(10),
            "the private Redis answers",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        Self {
            url,
            child: Some(child),
        }
    }

    /// Kills the server and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A TCP relay to `target` (`host:port`) that a test can take down (every open connection
/// cut, every new one refused) and bring up again: a network partition on demand.
pub struct Relay {
    pub port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_links) = (Arc::clone(&up), Arc::clone(&links));
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                accept_links.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            port,
            up,
            links,
            _accept: accept,
        }
    }

    pub async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A PostgreSQL server of the test's own (its own data directory and port), which the test
/// stops and starts. Its binaries are found with `pg_config --bindir`; as root the server
/// runs as the `postgres` user (PostgreSQL refuses to run as root).
pub struct PrivatePostgres {
    pub url: String,
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates a fresh cluster (`initdb`, trust authentication) and starts it.
    pub async fn start() -> Self {
        let bindir = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config is installed (the PostgreSQL suite needs the server binaries)");
        let bin = PathBuf::from(String::from_utf8_lossy(&bindir.stdout).trim());
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let dir = std::env::temp_dir().join(format!("gemchat-pg-{}", Uuid::now_v7()));
        std::fs::create_dir(&dir).expect("create the data directory");
        if as_postgres {
            let mut chown = std::process::Command::new("chown");
            chown.arg("postgres:").arg(&dir);
            run(chown).await;
        }
        let port = free_port();
        let server = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            dir,
            as_postgres,
        };
        let data = server.dir.join("data");
        let mut initdb = server.command("initdb");
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--no-instructions",
                "-D",
            ])
            .arg(&data);
        run(initdb).await;
        server.resume().await;
        server
    }

    /// Starts the server again on the same port and data (after `stop`), and waits until it
    /// accepts connections.
    pub async fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let mut start = self.command("pg_ctl");
        start
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(&log)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("start");
        run(start).await;
    }

    /// Stops the server: `fast` ends every session and shuts down cleanly; `immediate` is a
    /// crash (no checkpoint; the next start replays the WAL).
    pub async fn stop(&self, mode: &str) {
        let mut stop = self.command("pg_ctl");
        stop.args(["-w", "-m", mode, "-D"])
            .arg(self.dir.join("data"))
            .arg("stop");
        run(stop).await;
    }

    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            std::process::Command::new(path)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if Path::new(&data).join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&data)
                .arg("stop")
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a setup command off the async workers; its failure (with its output) fails the test.
async fn run(mut command: std::process::Command) {
    let shown = format!("{command:?}");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command's thread")
        .expect("run a PostgreSQL command");
    assert!(
        out.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nothing listens on now (for a server the test starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
