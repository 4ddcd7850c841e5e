//! The command line and configuration. Every setting is a flag with an environment variable
//! (`gemchat serve --help` lists them all); `.env` is read first; an empty variable counts as
//! unset.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "gemchat",
    version,
    about = "A backend for Gemini-style AI chat"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the HTTP API, and run the reply workers in the same process unless --no-workers.
    Serve(ServeArgs),
    /// Run the reply workers only (to scale out replies separately from the API).
    Worker(WorkerArgs),
    /// Bring the database schema up to date, then exit.
    Migrate(MigrateArgs),
    /// Grant or revoke the admin role (on the configured database; no HTTP route can).
    Admin(AdminArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    pub(crate) action: AdminAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminAction {
    /// Make the account with this mobile number an admin.
    Grant(RoleArgs),
    /// Take the admin role from the account with this mobile number.
    Revoke(RoleArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RoleArgs {
    /// The account's mobile number, written as at sign-in (`+91 98765 43210`; without `+`, in
    /// DEFAULT_REGION).
    pub(crate) mobile: String,
    #[command(flatten)]
    pub(crate) config: Config,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Serve the API only; replies are produced by `gemchat worker` processes.
    #[arg(long)]
    pub(crate) no_workers: bool,
    #[command(flatten)]
    pub(crate) config: Config,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) config: Config,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) config: Config,
}

/// Where one-time codes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtpDelivery {
    /// Return the code in the response body (mocked SMS: development and tests).
    Response,
    /// Write the code to the log only (mocked SMS).
    Log,
    /// Send a real SMS through Twilio's Messages API (`TWILIO_*`).
    Twilio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AiProviderKind {
    Gemini,
    Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Pretty,
    Json,
}

/// A secret setting: `Debug` never shows it, so logging a configuration cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

/// Every setting of a gemchat process.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address `serve` listens on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub(crate) host: String,

    /// Port `serve` listens on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub(crate) port: u16,

    /// `sqlite://path` (embedded, created on first run) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/gemchat.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Redis for the shared cache, rate-limit buckets and event fan-out across processes.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Folder for local state: the generated JWT secret when `JWT_SECRET` is unset.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Skip applying database migrations at start.
    #[arg(long, env = "SKIP_MIGRATIONS")]
    pub(crate) skip_migrations: bool,

    /// HS256 signing key for tokens; generated once into DATA_DIR when unset (development).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Token lifetime in seconds.
    #[arg(long, env = "JWT_TTL", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    pub jwt_ttl: u64,

    /// Where one-time codes go: returned in the response (mocked SMS), logged only, or sent
    /// as a real SMS through Twilio.
    #[arg(long, env = "OTP_DELIVERY", value_enum, default_value = "response")]
    pub otp_delivery: OtpDelivery,

    /// Regions (comma-separated ISO 3166 codes) whose numbers may receive codes; all when unset.
    #[arg(long, env = "OTP_ALLOWED_REGIONS")]
    pub otp_allowed_regions: Option<String>,

    /// Codes a day (UTC) that may be sent to the numbers of one region, all users together;
    /// unlimited when unset. A ceiling on SMS-pumping fraud, shared through Redis when set.
    #[arg(long, env = "OTP_REGION_DAILY_LIMIT")]
    pub otp_region_daily_limit: Option<u32>,

    /// Twilio account SID (`AC...`): the Messages API's account and the Basic-auth user.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Twilio auth token: the Basic-auth password.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<Secret>,

    /// The sender number of the SMS (E.164), unless a messaging service sends them.
    #[arg(long, env = "TWILIO_FROM")]
    pub twilio_from: Option<String>,

    /// The Twilio messaging service that sends the SMS (`MG...`), instead of `TWILIO_FROM`.
    #[arg(long, env = "TWILIO_MESSAGING_SERVICE_SID")]
    pub twilio_messaging_service_sid: Option<String>,

    /// Twilio API base URL (for tests).
    #[arg(
        long,
        env = "TWILIO_API_BASE",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_base: String,

    /// Milliseconds Twilio has to accept an SMS before the send counts as failed.
    #[arg(long, env = "TWILIO_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub twilio_timeout_ms: u64,

    /// Region (ISO 3166 code) for mobile numbers written without `+`.
    #[arg(long, env = "DEFAULT_REGION", default_value = "IN")]
    pub(crate) default_region: String,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Where attachment bytes live: `file://<folder>` (default: `uploads` in the data folder)
    /// or `s3://<bucket>/<prefix>` (with the usual `AWS_*` variables).
    #[arg(long, env = "STORAGE_URL")]
    pub storage_url: Option<String>,

    /// S3: the endpoint of an S3-compatible service (MinIO, R2, Garage); AWS's when unset.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// S3: the bucket's region.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// S3: the access key; without it, the usual AWS sources (session token, container or
    /// instance credentials) are asked.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<Secret>,

    /// S3: the secret of the access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<Secret>,

    /// Largest accepted upload, in bytes.
    #[arg(long, env = "UPLOAD_MAX_BYTES", default_value_t = 10 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1024 * 1024 * 1024))]
    pub upload_max_bytes: u64,

    /// AI provider: `gemini` when GEMINI_API_KEY is set, else the offline `echo`.
    #[arg(long, env = "AI_PROVIDER", value_enum)]
    pub ai_provider: Option<AiProviderKind>,

    /// Gemini API key.
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true)]
    pub gemini_api_key: Option<Secret>,

    /// Gemini model (for Basic users, and for titles).
    #[arg(long, env = "GEMINI_MODEL", default_value = "gemini-2.5-flash")]
    pub(crate) gemini_model: String,

    /// The Gemini model that answers Pro users (unset: GEMINI_MODEL).
    #[arg(long, env = "PRO_GEMINI_MODEL")]
    pub pro_gemini_model: Option<String>,

    /// Gemini API base URL (for proxies and tests).
    #[arg(
        long,
        env = "GEMINI_BASE_URL",
        default_value = "https://generativelanguage.googleapis.com"
    )]
    pub gemini_base_url: String,

    /// System instruction sent with every conversation.
    #[arg(
        long,
        env = "AI_SYSTEM_PROMPT",
        default_value = "You are a helpful, concise assistant in a chat app. Answer in Markdown when it helps."
    )]
    pub ai_system_prompt: String,

    /// Milliseconds the offline `echo` provider pauses between the chunks of a reply, so that
    /// replies visibly stream in (0: all at once).
    #[arg(long, env = "ECHO_CHUNK_DELAY_MS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub echo_chunk_delay_ms: u64,

    /// Messages of history sent to the model with each prompt.
    #[arg(long, env = "AI_CONTEXT_MESSAGES", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) ai_context_messages: u32,

    /// Tokens of history sent with each prompt (the prompt included): stored counts, estimated
    /// for text without one.
    #[arg(long, env = "AI_CONTEXT_TOKENS", default_value_t = 32_000, value_parser = clap::value_parser!(u32).range(100..=2_000_000))]
    pub ai_context_tokens: u32,

    /// AI calls in flight per process. A reply in flight holds no database connection and
    /// ~42 KiB (bench scenario 13): Gemini's rate limit, not the process, is the real cap.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub worker_concurrency: u32,

    /// Attempts before a reply is marked failed.
    #[arg(long, env = "JOB_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub job_max_attempts: u32,

    /// Seconds a running job's lease lasts; renewed while it runs.
    #[arg(long, env = "JOB_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub job_lease_seconds: u64,

    /// Seconds a stopping worker lets its jobs finish before handing the rest back.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub worker_shutdown_grace: u64,

    /// Prompts per UTC day on the Basic plan.
    #[arg(long, env = "BASIC_DAILY_LIMIT", default_value_t = 5)]
    pub basic_daily_limit: u32,

    /// Prompts per UTC day on the Pro plan (unset: unlimited).
    #[arg(long, env = "PRO_DAILY_LIMIT")]
    pub(crate) pro_daily_limit: Option<u32>,

    /// Seconds the chatroom list stays cached.
    #[arg(long, env = "CHATROOM_CACHE_TTL", default_value_t = 300)]
    pub(crate) chatroom_cache_ttl: u64,

    /// Stripe secret key; billing is off until it is set.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,

    /// Stripe webhook signing secrets, comma-separated while one is rolled.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,

    /// Stripe Price of the Pro plan.
    #[arg(long, env = "STRIPE_PRICE_ID")]
    pub stripe_price_id: Option<String>,

    /// Stripe API base URL (for tests).
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,

    /// Public base URL of this service (default `http://HOST:PORT`).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Requests a minute per client IP on the unauthenticated auth routes.
    #[arg(long, env = "RATE_LIMIT_AUTH_PER_MINUTE", default_value_t = 30)]
    pub rate_limit_auth_per_minute: u32,

    /// Requests a minute per user on every authenticated route.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_per_minute: u32,

    /// Take the client IP from `X-Forwarded-For` (the address the trusted proxy saw). Only
    /// behind a proxy that sets it; otherwise clients could pick their own IP.
    #[arg(long, env = "TRUST_PROXY")]
    pub trust_proxy: bool,

    /// Browser origins allowed to call the API (comma-separated, or `*`); none by default.
    #[arg(long, env = "CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Seconds a client has to send a request's headers, counted from when the connection is
    /// ready for a request (so it also closes idle HTTP/1.1 keep-alive connections).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) http_header_timeout: u64,

    /// Seconds a client has to send a request's body once its headers arrived (else 408).
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) http_body_timeout: u64,

    /// Seconds a connection may stay open with no byte moving either way (above the longest
    /// `?wait=true` and the 15 s keep-alive of event streams).
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) http_idle_timeout: u64,

    /// Seconds a stopping server lets open requests finish before closing their connections.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 15, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub(crate) shutdown_timeout: u64,

    /// Log format: `pretty` on a terminal, else `json`. RUST_LOG filters as usual.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
}

impl Config {
    /// The defaults, as if no flag or variable were given; the base of test configurations.
    pub fn defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let matches = without_env(Only::command()).get_matches_from(["gemchat"]);
        match Only::from_arg_matches(&matches) {
            Ok(only) => only.config,
            Err(err) => unreachable!("defaults always parse: {err}"),
        }
    }

    pub(crate) fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip = host
            .parse()
            .map_err(|_| anyhow::anyhow!("HOST must be an IP address, got {host:?}"))?;
        Ok(SocketAddr::new(ip, self.port))
    }
}

impl Cli {
    /// Parses the process's arguments and environment, treating empty variables as unset.
    pub fn parse_env() -> Self {
        let command = map_args(Cli::command(), &|arg| {
            let empty = arg
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty());
            if empty {
                arg.env(None::<&'static str>)
            } else {
                arg
            }
        });
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }
}

/// Applies `f` to every argument of `command` and its subcommands.
fn map_args(command: clap::Command, f: &dyn Fn(clap::Arg) -> clap::Arg) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    let mut command = command.mut_args(f);
    for name in names {
        command = command.mut_subcommand(name, |sub| map_args(sub, f));
    }
    command
}

/// The command with every environment lookup removed.
fn without_env(command: clap::Command) -> clap::Command {
    map_args(command, &|arg| arg.env(None::<&'static str>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::defaults();
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8000);
        assert_eq!(config.database_url, "sqlite://data/gemchat.db");
        assert_eq!(config.jwt_ttl, 86_400);
        assert_eq!(config.otp_delivery, OtpDelivery::Response);
        assert_eq!(config.basic_daily_limit, 5);
        assert_eq!(config.pro_daily_limit, None);
        assert_eq!(config.worker_concurrency, 512);
        assert_eq!(config.max_body_bytes, 65_536);
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let mut config = Config::defaults();
        config.jwt_secret = Some(Secret::new("super-secret-value"));
        assert!(!format!("{config:?}").contains("super-secret-value"));
        assert_eq!(
            config.jwt_secret.as_ref().map(Secret::expose),
            Some("super-secret-value")
        );
    }
}
