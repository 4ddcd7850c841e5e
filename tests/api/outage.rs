//! Degraded modes: PostgreSQL going away and coming back while gemchat runs. The test puts a
//! TCP relay between gemchat and the real PostgreSQL server and takes it down (every new
//! connection refused, every open one cut) and up again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::harness::{Backend, TestApp, TestDb, eventually, postgres_url};

/// A TCP relay to `target` that can be switched off and on.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Relay {
    async fn start(target: String) -> Self {
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

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_service_resumes_by_itself() {
    let Some(admin) = postgres_url() else { return };
    let db = TestDb::create(Backend::Postgres).await;
    let target = url::Url::parse(&admin)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(5432))))
        .expect("a host in TEST_DATABASE_URL");
    let relay = Relay::start(target).await;
    let mut through_relay = url::Url::parse(&db.url).expect("url");
    through_relay.set_port(Some(relay.port)).expect("port");
    let url = through_relay.to_string();
    // The app talks to PostgreSQL through the relay (the SQLite database it is built with is
    // replaced by this URL).
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url).await;
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
