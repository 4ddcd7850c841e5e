//! Servers a test owns: a private Redis, a private PostgreSQL it can stop, crash and start, and
//! a TCP relay that cuts the network on demand.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::eventually;

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
