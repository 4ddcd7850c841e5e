//! gemchat: a backend for Gemini-style AI chat. `main.rs` parses the command line and calls
//! [`run`]; everything else lives here, by domain (see the README's map of the code).

pub mod admin;
pub mod ai;
pub mod app;
pub mod auth;
pub mod billing;
pub mod cache;
pub mod chatrooms;
pub mod clock;
pub mod config;
pub mod database_gate;
pub mod error;
pub mod events;
pub mod http;
pub mod jobs;
pub mod messages;
pub mod metrics;
pub mod objects;
pub mod ops;
pub mod quota;
pub mod ratelimit;
pub mod redis_link;
pub mod replies;
pub mod storage;
pub mod telemetry;
pub mod uploads;
pub mod users;
pub mod web;

use std::sync::Arc;

use anyhow::Context;

use crate::clock::SystemClock;
use crate::config::{Cli, Command};

/// Runs one gemchat command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let outcome = run_command(cli).await;
    telemetry::flush();
    outcome
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.config;
            telemetry::init(config.log_format);
            let addr = config.listen_addr()?;
            let app = Arc::new(app::App::build(config, Arc::new(SystemClock)).await?);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tracing::info!(
                address = %listener.local_addr().unwrap_or(addr),
                database = %storage::redact_url(&app.config.database_url),
                workers = !args.no_workers,
                "gemchat is serving; API docs at /docs"
            );
            stop_on_signal(Arc::clone(&app));
            let workers = (!args.no_workers).then(|| tokio::spawn(work(Arc::clone(&app))));
            let http_app = Arc::clone(&app);
            let served =
                http::router::serve(app, listener, async move { http_app.stopped().await }).await;
            if let Some(workers) = workers {
                workers.await.context("the worker task")?;
            }
            served
        }
        Command::Worker(args) => {
            let config = args.config;
            telemetry::init(config.log_format);
            let app = Arc::new(app::App::build(config, Arc::new(SystemClock)).await?);
            stop_on_signal(Arc::clone(&app));
            work(app).await;
            Ok(())
        }
        Command::Migrate(args) => {
            telemetry::init(args.config.log_format);
            storage::Store::connect(&args.config.database_url, true).await?;
            tracing::info!("database is up to date");
            Ok(())
        }
        Command::Admin(args) => set_admin_role(args.action).await,
    }
}

/// `gemchat admin grant|revoke <mobile>`: says what it did on stdout; an impossible or unknown
/// number is an error (exit code 1).
#[allow(clippy::print_stdout, reason = "the command's answer to its operator")]
async fn set_admin_role(action: config::AdminAction) -> anyhow::Result<()> {
    let (args, admin) = match action {
        config::AdminAction::Grant(args) => (args, true),
        config::AdminAction::Revoke(args) => (args, false),
    };
    let config = args.config;
    let region = app::parse_region("DEFAULT_REGION", &config.default_region)?;
    let mobile = users::model::MobileNumber::parse(&args.mobile, region)
        .map_err(|why| anyhow::anyhow!("the mobile number {:?} {why}", args.mobile))?;
    let store = storage::Store::connect(&config.database_url, !config.skip_migrations).await?;
    let now = chrono::Utc::now();
    let outcome = admin::service::set_admin(&store, &mobile, admin, now).await?;
    use admin::service::RoleChange;
    let role = if admin { "an admin" } else { "not an admin" };
    match outcome {
        RoleChange::NoSuchUser => anyhow::bail!("no account has the mobile number {mobile}"),
        RoleChange::Changed => {
            println!("{mobile} is now {role}");
            tell_serving_processes(&config, &store, &mobile, now).await;
        }
        RoleChange::AlreadySo => println!("{mobile} was already {role}; nothing changed"),
    }
    Ok(())
}

/// Moves the user's cache version on in Redis, so every serving process shows the new role on
/// `GET /user/me` at once (without Redis, `/user/me` is not cached: nothing to tell). The role
/// itself is in force already (`/admin/*` reads it from the database); a failure here is a
/// warning, and [`users::service::ME_MAX_AGE`] bounds what it leaves stale.
#[allow(clippy::print_stderr, reason = "the command's answer to its operator")]
async fn tell_serving_processes(
    config: &config::Config,
    store: &storage::Store,
    mobile: &users::model::MobileNumber,
    now: chrono::DateTime<chrono::Utc>,
) {
    let Some(redis_url) = &config.redis_url else {
        return;
    };
    let ttl = std::time::Duration::from_secs(config.chatroom_cache_ttl.max(1));
    let told = match store.users.find_by_mobile(mobile, now).await {
        Ok(Some(user)) => cache::invalidate_user(redis_url, user.id, ttl).await,
        Ok(None) => Ok(()),
        Err(err) => Err(err.into()),
    };
    if let Err(err) = told {
        eprintln!(
            "warning: running servers may show the old role on /user/me for up to {} s: {err:#}",
            users::service::ME_MAX_AGE.num_seconds()
        );
    }
}

/// Every kind of background job this service runs, each by its handler.
/// Runs the job workers until shutdown, after making sure the recurring jobs are queued.
async fn work(app: Arc<app::App>) {
    if let Err(err) = uploads::cleanup::SweepObjects::schedule(&app).await {
        tracing::warn!(error = %err, "the object store sweep could not be queued; the next start will");
    }
    let stopping = app.stopping();
    jobs::worker::run_until_stopped(app, job_handlers(), stopping).await;
}

pub fn job_handlers() -> jobs::worker::Handlers {
    jobs::worker::Handlers::default()
        .with(replies::job::ReplyHandler)
        .with(chatrooms::title::TitleHandler)
        .with(uploads::cleanup::ExpireHandler)
        .with(uploads::cleanup::DeleteObjectsHandler)
        .with(uploads::cleanup::SweepHandler)
}

/// Begins the app's shutdown on SIGINT or SIGTERM.
fn stop_on_signal(app: Arc<app::App>) {
    tokio::spawn(async move {
        http::server::shutdown_signal().await;
        app.begin_shutdown();
    });
}
