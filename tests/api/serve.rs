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

/// The binary itself, started in an empty folder with no configuration at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_folder_serves_with_no_configuration_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;

    install_crypto();
    let dir = std::env::temp_dir().join(format!("gemchat-fresh-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gemchat"))
        .arg("serve")
        .current_dir(&dir)
        .env_clear()
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        // Empty variables count as unset.
        .env("JWT_TTL", "")
        .env("DATABASE_URL", "")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start gemchat");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut warned_about_secret = false;
    let mut warned_about_echo = false;
    let address = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let message = event["message"].as_str().unwrap_or_default();
            warned_about_secret |= message.contains("JWT_SECRET is not set");
            warned_about_echo |= event["level"] == "WARN" && message.contains("ECHO (offline)");
            if message.contains("gemchat is serving") {
                return event["address"].as_str().map(str::to_owned);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("gemchat announces where it serves");
    assert!(warned_about_secret, "a generated secret is announced");
    assert!(
        warned_about_echo,
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
