//! The server over real TCP: graceful shutdown and client addresses.

use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::harness::{Backend, TestApp, install_crypto, random_mobile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_finishes_requests_in_flight() {
    install_crypto();
    let test = TestApp::spawn(Backend::Sqlite).await;
    // The real router plus one route this test controls, so a request is provably in flight.
    let (started_tx, mut started) = mpsc::channel::<()>(1);
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
    let router = gemchat::http::router::router(Arc::clone(&test.app)).route(
        "/test/in-flight",
        axum::routing::get(move || {
            let started_tx = started_tx.clone();
            let released = Arc::clone(&released);
            async move {
                let _ = started_tx.send(()).await;
                if let Some(released) = released.lock().await.take() {
                    let _ = released.await;
                }
                "finished"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(gemchat::http::server::serve(
        router,
        listener,
        gemchat::http::server::Limits::from_config(test.app.config()),
        async {
            let _ = stopped.await;
        },
    ));

    let in_flight = tokio::spawn(reqwest::get(format!("http://{addr}/test/in-flight")));
    started.recv().await.expect("the handler started");
    stop.send(()).expect("signal shutdown");

    // New connections are refused once shutdown began (polled with a deadline).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while reqwest::Client::new()
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting connections"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );

    release.send(()).expect("release the handler");
    let response = in_flight
        .await
        .expect("join")
        .expect("the in-flight request completes");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap_or_default(), "finished");
    server.await.expect("join").expect("server stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_record_the_client_address() {
    install_crypto();
    let test = TestApp::spawn(Backend::Sqlite).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(gemchat::http::router::serve(
        Arc::clone(&test.app),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mobile = random_mobile();
    let signup = client
        .post(format!("{base}/auth/signup"))
        .json(&json!({"mobile_number": mobile}))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status().as_u16(), 201);
    let issued: serde_json::Value = client
        .post(format!("{base}/auth/send-otp"))
        .json(&json!({"mobile_number": mobile}))
        .send()
        .await
        .expect("send-otp")
        .json()
        .await
        .expect("json");
    let session: serde_json::Value = client
        .post(format!("{base}/auth/verify-otp"))
        .header("user-agent", "curl/8")
        .json(&json!({"mobile_number": mobile, "otp": issued["otp"]}))
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    let token = session["token"].as_str().unwrap_or_default();
    let sessions: serde_json::Value = client
        .get(format!("{base}/auth/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sessions")
        .json()
        .await
        .expect("json");
    assert_eq!(sessions["sessions"][0]["ip"], "127.0.0.1");
    assert_eq!(sessions["sessions"][0]["user_agent"], "curl/8");
    let _ = stop.send(());
    server.await.expect("join").expect("clean stop");
}

/// The binary, started in `dir` with `env` only (and `LOG_FORMAT=json`): the child, its log
/// lines as JSON, and the address it serves on (read from its announcement, within 30 s).
async fn start_binary(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    String,
    Vec<serde_json::Value>,
) {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gemchat"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start gemchat");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut before = Vec::new();
    let address = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"]
                .as_str()
                .is_some_and(|m| m.contains("gemchat is serving"))
            {
                return event["address"].as_str().map(str::to_owned);
            }
            before.push(event);
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("gemchat announces where it serves");
    (child, lines, address, before)
}

/// Stops the binary with SIGTERM and expects a clean exit within 30 s.
async fn stop_binary(mut child: tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await;
    assert!(killed.is_ok_and(|s| s.success()));
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("stops promptly")
        .expect("exit status");
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
}

/// A folder of its own under the system's temporary one.
fn temp_folder(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gemchat-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The binary itself, started in an empty folder with no configuration at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_folder_serves_with_no_configuration_and_stops_on_sigterm() {
    install_crypto();
    let dir = temp_folder("fresh");
    // Empty variables count as unset.
    let (child, _lines, address, before) =
        start_binary(&dir, &[("JWT_TTL", ""), ("DATABASE_URL", "")]).await;
    let said = |what: &str, level: Option<&str>| {
        before.iter().any(|event| {
            event["message"].as_str().is_some_and(|m| m.contains(what))
                && level.is_none_or(|level| event["level"] == level)
        })
    };
    assert!(
        said("JWT_SECRET is not set", None),
        "a generated secret is announced"
    );
    assert!(
        said("ECHO (offline)", Some("WARN")),
        "the offline echo provider is announced loudly"
    );
    assert!(dir.join("data/gemchat.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.join("data/jwt_secret")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
    }
    let health = reqwest::get(format!("http://{address}/health"))
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    stop_binary(child).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each request leaves one access line: its method, route template (never the concrete path),
/// request id and, once signed in, user id, with status and latency. Read from the binary's
/// own output (batched off a terminal), as a log collector would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_one_access_line_naming_its_route_and_caller() {
    install_crypto();
    let dir = temp_folder("access");
    let (child, mut lines, address, _) = start_binary(&dir, &[]).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{address}{path}");
    let mobile = random_mobile();
    let post = |path: &str, body: serde_json::Value| http.post(url(path)).json(&body).send();
    let signed_up = post(
        "/auth/signup",
        json!({"mobile_number": mobile, "name": "Lee"}),
    )
    .await
    .expect("signup");
    assert_eq!(signed_up.status().as_u16(), 201);
    let signed_up: serde_json::Value = signed_up.json().await.expect("json");
    let user = &signed_up["user"];
    let sent: serde_json::Value = post("/auth/send-otp", json!({"mobile_number": mobile}))
        .await
        .expect("send-otp")
        .json()
        .await
        .expect("json");
    let verified: serde_json::Value = post(
        "/auth/verify-otp",
        json!({"mobile_number": mobile, "otp": sent["otp"]}),
    )
    .await
    .expect("verify-otp")
    .json()
    .await
    .expect("json");
    let token = verified["token"].as_str().expect("a token");
    let me = http
        .get(url("/user/me"))
        .bearer_auth(token)
        .header("x-request-id", "access-line-me")
        .send()
        .await
        .expect("user/me");
    assert_eq!(me.status().as_u16(), 200);
    let missing_room = uuid::Uuid::now_v7().to_string();
    let missing = http
        .get(url(&format!("/chatroom/{missing_room}")))
        .bearer_auth(token)
        .header("x-request-id", "access-line-missing")
        .send()
        .await
        .expect("chatroom");
    assert_eq!(missing.status().as_u16(), 404);

    let mut access = std::collections::HashMap::new();
    let mut raw_missing = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while access.len() < 2 {
            let Ok(Some(line)) = lines.next_line().await else {
                break;
            };
            let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            let id = event["span"]["request_id"].as_str().unwrap_or_default();
            if id.starts_with("access-line-") && event["message"] == "request finished" {
                if id == "access-line-missing" {
                    raw_missing = line.clone();
                }
                assert!(
                    access.insert(id.to_owned(), event).is_none(),
                    "one line per request: {line}"
                );
            }
        }
    })
    .await
    .expect("both access lines arrive");
    let me = &access["access-line-me"];
    assert_eq!(me["level"], "INFO");
    assert_eq!(me["status"], 200);
    assert!(me["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_eq!(me["span"]["method"], "GET");
    assert_eq!(me["span"]["route"], "/user/me");
    assert_eq!(me["span"]["user_id"].as_str(), user["id"].as_str());
    let missing = &access["access-line-missing"];
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["span"]["route"], "/chatroom/{id}");
    assert!(
        !raw_missing.contains(&missing_room),
        "ids stay out of the log: {raw_missing}"
    );
    assert!(!raw_missing.contains(token), "tokens stay out of the log");
    stop_binary(child).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Event streams never end by themselves; shutdown must end them, or it would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_event_streams() {
    use futures::StreamExt;

    install_crypto();
    let test = TestApp::spawn(Backend::Sqlite).await;
    let (token, _) = test.new_user().await;
    let room = test.chatroom(&token, "listening").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Arc::clone(&test.app);
    let server = tokio::spawn(gemchat::http::router::serve(
        Arc::clone(&app),
        listener,
        async move { app.stopped().await },
    ));
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/chatroom/{room}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("connect");
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.bytes_stream();
    test.app.begin_shutdown();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ends on shutdown");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .expect("join")
        .expect("clean stop");
}
