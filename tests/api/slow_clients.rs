//! The release-shaped binary over real sockets: clients that send slowly or not at all are cut
//! off, a stalled client cannot hold a stopping process past its deadline, and an event stream
//! ends on one process when its token is revoked (or its room deleted) on another.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Backend, SseClient, TestDb, eventually, postgres_url, redis_url};
use crate::scale::{Api, Process, process_env, sign_in, start};

const WITHIN: Duration = Duration::from_secs(15);

/// `gemchat serve` on a fresh SQLite folder, with `settings` on top of the test defaults.
async fn serve(args: &[&str], settings: &[(&'static str, &str)]) -> (Process, TestDb) {
    crate::harness::install_crypto();
    let db = TestDb::create(Backend::Sqlite).await;
    let mut env = process_env(&db.url);
    env.extend(settings.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    (start(&all, &env, "gemchat is serving").await, db)
}

/// Reads until the server closes the connection; what it sent, or `None` if it stayed open
/// for `within`.
async fn read_until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// Writes `bytes` one at a time, `pace` apart, until done or the peer is gone.
fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, pace: Duration) {
    tokio::spawn(async move {
        for byte in bytes {
            tokio::time::sleep(pace).await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
}

fn address(process: &Process) -> SocketAddr {
    process.address.expect("an API address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_after_the_header_timeout() {
    let (process, _db) = serve(&[], &[("HTTP_HEADER_TIMEOUT", "1")]).await;
    let addr = address(&process);
    let mut readers = Vec::new();
    for _ in 0..40 {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (reader, mut writer) = stream.into_split();
        writer
            .write_all(b"GET /health HTTP/1.1\r\nHost: gemchat\r\n")
            .await
            .expect("write");
        trickle(
            writer,
            b"X-Slow: 1234567890\r\n".repeat(10),
            Duration::from_millis(300),
        );
        readers.push(reader);
    }
    for mut reader in readers {
        let closed = tokio::time::timeout(WITHIN, async {
            let mut buffer = [0u8; 1024];
            while let Ok(n) = reader.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a header sent a byte at a time is cut off");
    }
    let health = reqwest::get(format!("http://{addr}/health")).await;
    assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closes() {
    let (process, _db) = serve(&[], &[("HTTP_BODY_TIMEOUT", "1")]).await;
    let stream = TcpStream::connect(address(&process))
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /auth/signup HTTP/1.1\r\nHost: gemchat\r\nContent-Type: application/json\r\n\
              Content-Length: 200\r\n\r\n{\"mobile",
        )
        .await
        .expect("write");
    trickle(writer, vec![b' '; 150], Duration::from_millis(300));
    let answer = read_until_closed(&mut reader, WITHIN)
        .await
        .expect("the server answers and closes the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("request_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let (process, _db) = serve(
        &[],
        &[("HTTP_HEADER_TIMEOUT", "1"), ("HTTP_IDLE_TIMEOUT", "2")],
    )
    .await;
    let addr = address(&process);
    // HTTP/1.1 keep-alive after a complete exchange: the wait for the next request is bounded.
    let mut keep_alive = TcpStream::connect(addr).await.expect("connect");
    keep_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: gemchat\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut keep_alive, WITHIN)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // HTTP/2 (prior knowledge) with nothing moving: the idle timeout closes it.
    let mut h2 = TcpStream::connect(addr).await.expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("write");
    assert!(
        read_until_closed(&mut h2, WITHIN).await.is_some(),
        "a silent HTTP/2 connection is closed"
    );
}

/// SIGTERM with a half-sent request and a request waiting for a reply that never comes (no
/// workers): the process still exits, once `SHUTDOWN_TIMEOUT` has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_hold_shutdown_past_its_deadline() {
    let (mut process, _db) = serve(
        &["--no-workers"],
        &[("SHUTDOWN_TIMEOUT", "1"), ("HTTP_HEADER_TIMEOUT", "600")],
    )
    .await;
    let addr = address(&process);
    let api = Api::new(&process);
    let token = sign_in(&api, &api).await;
    let (_, room) = api
        .post("/chatroom", Some(&token), json!({"name": "waiting"}))
        .await;
    let room = room["id"].as_str().unwrap_or_default().to_owned();
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /health HTTP/1.1\r\nHost: gem")
        .await
        .expect("write");
    let path = format!("/chatroom/{room}/message?wait=true&timeout=60");
    let sender = token.clone();
    let waiting = tokio::spawn(async move {
        api.post(
            &path,
            Some(&sender),
            json!({"content": "nobody will answer"}),
        )
        .await
    });
    // The waiting request is in flight once its prompt is stored.
    let watcher = Api::new(&process);
    eventually(WITHIN, "the prompt is stored", || async {
        let (_, page) = watcher
            .get(&format!("/chatroom/{room}/messages"), &token)
            .await;
        page["messages"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    assert!(!waiting.is_finished());

    let pid = process.child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await;
    assert!(killed.is_ok_and(|s| s.success()));
    let status = tokio::time::timeout(WITHIN, process.child.wait())
        .await
        .expect("the process exits despite the stalled clients")
        .expect("exit status");
    assert!(status.success(), "{status}");
    drop(half);
}

/// Two API processes on one PostgreSQL and Redis: a stream held by A ends when its token is
/// revoked through B, and when its room is deleted through B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_process_ends_when_another_revokes_its_token_or_deletes_its_room() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    crate::harness::install_crypto();
    let db = TestDb::create(Backend::Postgres).await;
    let mut env = process_env(&db.url);
    env.insert("REDIS_URL", redis);
    let (a, b) = tokio::join!(
        start(&["serve"], &env, "gemchat is serving"),
        start(&["serve"], &env, "gemchat is serving"),
    );
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let token = sign_in(&api_a, &api_a).await;
    let (_, room) = api_a
        .post("/chatroom", Some(&token), json!({"name": "listening"}))
        .await;
    let room = room["id"].as_str().unwrap_or_default().to_owned();

    let mut stream = SseClient::connect(address(&a), &room, &token, None).await;
    let (status, _) = api_b
        .call(reqwest::Method::POST, "/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, 204);
    assert!(
        stream.ends_within(WITHIN).await,
        "A's stream ends after a logout on B"
    );

    let fresh = sign_in(&api_b, &api_b).await;
    let (status, _) = api_a.get("/user/me", &fresh).await;
    assert_eq!(status, 200);
    // The room belongs to the first account; the new one listens to a room of its own.
    let (_, own) = api_b
        .post("/chatroom", Some(&fresh), json!({"name": "own"}))
        .await;
    let own = own["id"].as_str().unwrap_or_default().to_owned();
    let mut stream = SseClient::connect(address(&a), &own, &fresh, None).await;
    let (status, _): (u16, Value) = api_b
        .call(
            reqwest::Method::DELETE,
            &format!("/chatroom/{own}"),
            Some(&fresh),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        stream.ends_within(WITHIN).await,
        "A's stream ends when B deletes its room"
    );
}
