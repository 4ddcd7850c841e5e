//! Scale-out: two API processes and two worker processes of the real binary, sharing one
//! PostgreSQL database and Redis. Every reply is produced once, the quota is shared, and the
//! chatroom list is fresh on both API processes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use wiremock::{Request, Respond, ResponseTemplate};

use crate::fakes::{FakeGemini, GEMINI_KEY, sse_reply};
use crate::harness::{
    Backend, FreshBucket, JWT_SECRET, TestDb, eventually, postgres_url, random_mobile, redis_url,
    s3_url,
};

/// Answers each prompt with "echo: <prompt>", after a short delay, like a slow model.
struct EchoGemini;

impl Respond for EchoGemini {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let prompt = body["contents"]
            .as_array()
            .and_then(|turns| turns.last())
            .and_then(|turn| turn["parts"][0]["text"].as_str())
            .unwrap_or_default()
            .to_owned();
        sse_reply(&["echo: ", &prompt]).set_delay(Duration::from_millis(100))
    }
}

pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) address: Option<SocketAddr>,
}

/// What every gemchat process of a test runs with: its database, the test secret, a free
/// port and JSON logs (which `start` reads).
pub(crate) fn process_env(database_url: &str) -> HashMap<&'static str, String> {
    HashMap::from([
        ("DATABASE_URL", database_url.to_owned()),
        ("JWT_SECRET", JWT_SECRET.into()),
        ("PORT", "0".into()),
        ("LOG_FORMAT", "json".into()),
    ])
}

/// The environment of processes that share PostgreSQL and Redis and ask Gemini at `gemini`.
pub(crate) fn shared_env(
    database_url: &str,
    redis: String,
    gemini: String,
) -> HashMap<&'static str, String> {
    let mut env = process_env(database_url);
    env.extend([
        ("REDIS_URL", redis),
        ("GEMINI_API_KEY", GEMINI_KEY.into()),
        ("GEMINI_BASE_URL", gemini),
    ]);
    env
}

/// Starts `gemchat <args>` and waits until it says it is up.
pub(crate) async fn start(args: &[&str], env: &HashMap<&str, String>, ready: &str) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gemchat"));
    command
        .args(args)
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start gemchat");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"].as_str().is_some_and(|m| m.contains(ready)) {
                return Some(event["address"].as_str().and_then(|a| a.parse().ok()));
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("gemchat {args:?} did not start"));
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Process { child, address }
}

pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(process: &Process) -> Self {
        Self {
            base: format!("http://{}", process.address.expect("an API address")),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }
}

fn room_names(list: &Value) -> Vec<String> {
    list["chatrooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_and_two_worker_processes_share_the_work() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    crate::harness::install_crypto();
    let db = TestDb::create(Backend::Postgres).await;
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(EchoGemini)
        .mount(&gemini.server)
        .await;
    let mut env = shared_env(&db.url, redis, gemini.uri());
    env.insert("WORKER_CONCURRENCY", "4".into());
    // All four start at once, and all migrate: concurrent starts are safe.
    let (a, b, _w1, _w2) = tokio::join!(
        start(&["serve", "--no-workers"], &env, "gemchat is serving"),
        start(&["serve", "--no-workers"], &env, "gemchat is serving"),
        start(&["worker"], &env, "job worker started"),
        start(&["worker"], &env, "job worker started"),
    );
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));

    // Signed up and in on A, the code sent through B.
    let token = sign_in(&api_a, &api_b).await;

    // The list is fresh on both API processes, whichever made the change.
    let (_, first) = api_a
        .post("/chatroom", Some(&token), json!({"name": "first"}))
        .await;
    for api in [&api_b, &api_a, &api_a] {
        // Read twice on A: the second is served from A's memory.
        assert_eq!(room_names(&api.get("/chatroom", &token).await.1), ["first"]);
    }
    let (_, second) = api_b
        .post("/chatroom", Some(&token), json!({"name": "second"}))
        .await;
    let on_a = room_names(&api_a.get("/chatroom", &token).await.1);
    assert_eq!(on_a.len(), 2, "{on_a:?}");
    let rooms = [
        first["id"].as_str().unwrap_or_default().to_owned(),
        second["id"].as_str().unwrap_or_default().to_owned(),
    ];

    // The quota is shared: five prompts through either process, the sixth refused.
    let mut prompts = Vec::new();
    for i in 0..5 {
        let api = if i % 2 == 0 { &api_a } else { &api_b };
        let room = &rooms[i % 2];
        let prompt = format!("prompt number {i}");
        let (status, _) = api
            .post(
                &format!("/chatroom/{room}/message"),
                Some(&token),
                json!({"content": prompt}),
            )
            .await;
        assert_eq!(status, 202);
        prompts.push(prompt);
    }
    let (status, refused) = api_b
        .post(
            &format!("/chatroom/{}/message", rooms[0]),
            Some(&token),
            json!({"content": "sixth"}),
        )
        .await;
    assert_eq!(status, 429);
    assert_eq!(refused["code"], "daily_limit_reached");

    // Every reply is produced, by one of the workers, exactly once.
    let all_done = || async {
        let mut done = 0;
        for room in &rooms {
            let (_, page) = api_a
                .get(&format!("/chatroom/{room}/messages"), &token)
                .await;
            done += page["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["role"] == "model" && m["status"] == "completed")
                .count();
        }
        done == 5
    };
    eventually(
        Duration::from_secs(60),
        "five replies are completed",
        all_done,
    )
    .await;
    let mut asked: Vec<String> = gemini
        .requests()
        .await
        .iter()
        .filter_map(|body| {
            body["contents"].as_array()?.last()?["parts"][0]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    asked.sort();
    assert_eq!(asked, prompts, "each prompt went to Gemini exactly once");
    for room in &rooms {
        let (_, page) = api_b
            .get(&format!("/chatroom/{room}/messages"), &token)
            .await;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        for pair in messages.chunks(2) {
            let prompt = pair[0]["content"].as_str().unwrap_or_default();
            assert_eq!(
                pair[1]["content"],
                format!("echo: {prompt}"),
                "each reply answers its own prompt"
            );
        }
    }
    // The last message moved each room up; both processes agree on the order.
    assert_eq!(
        api_a.get("/chatroom", &token).await.1,
        api_b.get("/chatroom", &token).await.1
    );
    drop((a.child, b.child));
}

/// A new account: signed up through `first`, its code sent through `second`, signed in
/// through `first` again; the token.
pub(crate) async fn sign_in(first: &Api, second: &Api) -> String {
    let mobile = random_mobile();
    let (status, _) = first
        .post("/auth/signup", None, json!({"mobile_number": mobile}))
        .await;
    assert_eq!(status, 201);
    let (_, issued) = second
        .post("/auth/send-otp", None, json!({"mobile_number": mobile}))
        .await;
    let (status, session) = first
        .post(
            "/auth/verify-otp",
            None,
            json!({"mobile_number": mobile, "otp": issued["otp"]}),
        )
        .await;
    assert_eq!(status, 200);
    session["token"].as_str().unwrap_or_default().to_owned()
}

/// A reply streamed by a worker process is cancelled through an API process: the worker
/// closes the AI call within 2 s, the reply keeps the text streamed so far, and the room's
/// next reply starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_process_stops_the_stream_on_another() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    crate::harness::install_crypto();
    let db = TestDb::create(Backend::Postgres).await;
    let gemini = crate::gemini_stream::StreamingGemini::start().await;
    let env = shared_env(&db.url, redis, gemini.uri.clone());
    let (api_process, _worker) = tokio::join!(
        start(&["serve", "--no-workers"], &env, "gemchat is serving"),
        start(&["worker"], &env, "job worker started"),
    );
    let api = Api::new(&api_process);
    let token = sign_in(&api, &api).await;
    let (_, room) = api
        .post("/chatroom", Some(&token), json!({"name": "far"}))
        .await;
    let room = room["id"].as_str().unwrap_or_default().to_owned();
    let address = api_process.address.expect("an API address");
    let mut events = crate::harness::SseClient::connect(address, &room, &token, None).await;
    let send = format!("/chatroom/{room}/message");
    let (_, first) = api
        .post(&send, Some(&token), json!({"content": "a long answer"}))
        .await;
    api.post(&send, Some(&token), json!({"content": "and then this"}))
        .await;
    let call = gemini.next_call().await;
    call.send("It began ").await;
    // The delta crossed from the worker process to this one (its text so far is in Redis).
    events.until("reply.delta").await;

    let reply = first["reply"]["id"].as_str().unwrap_or_default();
    let cancel = format!("/chatroom/{room}/messages/{reply}/cancel");
    let (status, cancelled) = api.post(&cancel, Some(&token), json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["content"], "It began ");
    call.closed_by_client(Duration::from_secs(2)).await;
    // The room's next reply goes to the model at once.
    let next = gemini.next_call().await;
    let turns: Vec<&str> = next.body["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|turn| turn["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(turns, ["a long answer", "It began ", "and then this"]);
}

/// A file uploaded through an API process reaches Gemini from a worker in another process:
/// the bytes went through the shared S3 bucket, the metadata through PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_on_one_process_is_sent_by_a_worker_on_another() {
    let (Some(_), Some(redis), Some(s3)) = (postgres_url(), redis_url(), s3_url()) else {
        return;
    };
    crate::harness::install_crypto();
    let db = TestDb::create(Backend::Postgres).await;
    let bucket = FreshBucket::create(&s3).await;
    let mut config = gemchat::config::Config::defaults();
    bucket.configure(&mut config);
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["A dot."]))
        .mount(&gemini.server)
        .await;
    let mut env = shared_env(&db.url, redis, gemini.uri());
    env.extend([
        (
            "STORAGE_URL",
            config.storage_url.clone().unwrap_or_default(),
        ),
        ("AWS_ENDPOINT_URL", s3),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]);
    let (api_process, _worker) = tokio::join!(
        start(&["serve", "--no-workers"], &env, "gemchat is serving"),
        start(&["worker"], &env, "job worker started"),
    );
    let api = Api::new(&api_process);
    let token = sign_in(&api, &api).await;
    // A PNG signature and header-sized garbage: an absurd image size must cost a bounded
    // number of tokens (it once overflowed PostgreSQL's integer).
    let image: Vec<u8> = [&b"\x89PNG\r\n\x1a\n"[..], &[7; 300]].concat();
    let form = crate::harness::multipart(&[("file", Some("dot.png"), None, &image)]);
    let uploaded = api
        .http
        .post(format!("{}/uploads", api.base))
        .bearer_auth(&token)
        .header(
            "content-type",
            "multipart/form-data; boundary=gemchat-test-boundary",
        )
        .body(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status().as_u16(), 201);
    let upload: Value = uploaded.json().await.unwrap_or_default();
    let (_, room) = api
        .post("/chatroom", Some(&token), json!({"name": "files"}))
        .await;
    let room = room["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = api
        .post(
            &format!("/chatroom/{room}/message?wait=true"),
            Some(&token),
            json!({"content": "what is this?", "attachments": [upload["id"]]}),
        )
        .await;
    assert_eq!(status, 200, "the worker process answered");
    let requests = gemini.requests().await;
    let inline = &requests[0]["contents"][0]["parts"][1]["inlineData"];
    assert_eq!(inline["mimeType"], "image/png");
    let data = inline["data"].as_str().unwrap_or_default();
    let sent = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data);
    assert_eq!(sent.ok(), Some(image), "the exact bytes");
}
