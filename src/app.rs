//! The application: [`App`], what a gemchat process is built from (configuration and the
//! adapter behind every port, chosen here and only here). The HTTP layer is in `http/`.

use std::sync::Arc;

use anyhow::Context;

use crate::ai::AiProvider;
use crate::ai::echo::EchoProvider;
use crate::ai::gemini::GeminiProvider;
use crate::ai::pause::{AiPause, MemoryPause, RedisPause};
use crate::auth::jwt::{self, JwtKeys};
use crate::auth::otp::{IssuePolicy, OtpKey};
use crate::auth::sms::{LogSmsSender, SmsSender};
use crate::auth::tokens::Authenticator;
use crate::auth::twilio::TwilioSender;
use crate::billing::gateway::{PaymentGateway, Price};
use crate::billing::stripe::StripeGateway;
use crate::cache::{MemoryUserCache, RedisUserCache, UserCache};
use crate::clock::Clock;
use crate::config::{AiProviderKind, Config, OtpDelivery};
use crate::database_gate::DatabaseGate;
use crate::events::EventBus;
use crate::quota::model::QuotaPolicy;
use crate::redis_link::RedisLink;
use crate::replies::progress::{MemoryProgress, RedisProgress, ReplyProgress};
use crate::storage::Store;

/// Everything a gemchat process holds: configuration and the adapters behind each port.
pub struct App {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) auth: Authenticator,
    pub(crate) otp_key: OtpKey,
    pub(crate) otp_policy: IssuePolicy,
    pub(crate) sms: Arc<dyn SmsSender>,
    pub(crate) region: phonenumber::country::Id,
    /// Regions whose numbers may receive codes (`OTP_ALLOWED_REGIONS`); `None`: all.
    pub(crate) allowed_regions: Option<Vec<phonenumber::country::Id>>,
    pub(crate) quota: QuotaPolicy,
    pub(crate) redis: Option<RedisLink>,
    /// Refuses database work at once while the database is unreachable.
    pub(crate) database_gate: Arc<DatabaseGate>,
    pub(crate) events: Arc<EventBus>,
    pub(crate) user_cache: Arc<dyn UserCache>,
    pub(crate) progress: Arc<dyn ReplyProgress>,
    /// Where the replies this process streams hear that they must stop.
    pub(crate) stops: crate::replies::stops::Stops,
    pub(crate) ai: Arc<dyn AiProvider>,
    /// When the AI provider's rate limit holds every AI call off.
    pub(crate) ai_pause: Arc<dyn AiPause>,
    /// Where attachment bytes live (`STORAGE_URL`).
    pub(crate) objects: Arc<dyn crate::objects::Objects>,
    /// Stripe, when `STRIPE_SECRET_KEY` is set; billing is off otherwise.
    pub(crate) payments: Option<Arc<dyn PaymentGateway>>,
    /// Pro's price, read from Stripe once.
    pub(crate) pro_price: tokio::sync::OnceCell<Price>,
    /// Abuse limits (per IP on auth routes, per user elsewhere).
    pub(crate) limiter: Arc<dyn crate::ratelimit::RateLimiter>,
    /// Renders `/metrics`.
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Turns true when the process begins to shut down; long-lived work (event streams,
    /// workers) watches it.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Connects to the database (migrating it unless told not to) and Redis, and loads the
    /// signing secret.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::builder(config, clock).build().await
    }

    /// A builder, for a process whose AI provider is not the configured one (a test double).
    pub fn builder(config: Config, clock: Arc<dyn Clock>) -> AppBuilder {
        AppBuilder {
            config,
            clock,
            ai: None,
        }
    }

    /// The configuration this process runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database gate: closed while the database is known to be unreachable.
    pub fn database_gate(&self) -> &DatabaseGate {
        &self.database_gate
    }

    /// The repositories.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The content so far of replies being streamed.
    pub fn progress(&self) -> &dyn ReplyProgress {
        self.progress.as_ref()
    }

    /// The Redis link, when `REDIS_URL` is set.
    pub fn redis(&self) -> Option<&RedisLink> {
        self.redis.as_ref()
    }
}

/// Builds an [`App`]: the configured adapters, but for those swapped in.
pub struct AppBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    ai: Option<Arc<dyn AiProvider>>,
}

impl AppBuilder {
    /// Uses `ai` instead of the configured AI provider.
    pub fn ai(mut self, ai: Arc<dyn AiProvider>) -> Self {
        self.ai = Some(ai);
        self
    }

    /// Connects to the database (migrating it unless told not to) and Redis, and loads the
    /// signing secret.
    pub async fn build(self) -> anyhow::Result<App> {
        let Self { config, clock, ai } = self;
        let region = parse_region("DEFAULT_REGION", &config.default_region)?;
        let allowed_regions = config
            .otp_allowed_regions
            .as_deref()
            .map(|list| {
                list.split(',')
                    .filter(|code| !code.trim().is_empty())
                    .map(|code| parse_region("OTP_ALLOWED_REGIONS", code))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?;
        let sms: Arc<dyn SmsSender> = match config.otp_delivery {
            OtpDelivery::Twilio => {
                tracing::info!("one-time codes are sent by SMS through Twilio");
                Arc::new(TwilioSender::from_config(&config)?)
            }
            OtpDelivery::Response | OtpDelivery::Log => {
                tracing::warn!(
                    "SMS is MOCKED: one-time codes are {} (set OTP_DELIVERY=twilio to send them)",
                    if config.otp_delivery == OtpDelivery::Response {
                        "returned in the response"
                    } else {
                        "written to the log"
                    }
                );
                Arc::new(LogSmsSender)
            }
        };
        let store = Store::connect(&config.database_url, !config.skip_migrations).await?;
        let secret = jwt::load_or_generate_secret(
            config
                .jwt_secret
                .as_ref()
                .map(crate::config::Secret::expose),
            &config.data_dir,
        )?;
        let ttl = chrono::Duration::seconds(i64::try_from(config.jwt_ttl).unwrap_or(86_400));
        let (redis, events) = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str()).context("parsing REDIS_URL")?;
                let link = RedisLink::new(connect_redis(client.clone()).await?);
                let events = EventBus::redis(client, link.clone()).await?;
                (Some(link), events)
            }
            None => (None, EventBus::in_process()),
        };
        let events = Arc::new(events);
        let cache_ttl = std::time::Duration::from_secs(config.chatroom_cache_ttl.max(1));
        let (user_cache, progress): (Arc<dyn UserCache>, Arc<dyn ReplyProgress>) = match &redis {
            Some(conn) => (
                Arc::new(RedisUserCache::new(conn.clone(), cache_ttl)),
                Arc::new(RedisProgress::new(conn.clone())),
            ),
            None => (
                Arc::new(MemoryUserCache::new(cache_ttl)),
                Arc::new(MemoryProgress::default()),
            ),
        };
        let ai = match ai {
            Some(ai) => ai,
            None => ai_provider(&config)?,
        };
        let ai_pause: Arc<dyn AiPause> = match &redis {
            Some(conn) => Arc::new(RedisPause::new(conn.clone(), &ai_project(&config))),
            None => Arc::new(MemoryPause::default()),
        };
        let objects = crate::objects::store::CrateObjects::open(&config)?;
        tracing::info!("attachments are kept in the {}", objects.described);
        let limiter: Arc<dyn crate::ratelimit::RateLimiter> = match &redis {
            Some(conn) => Arc::new(crate::ratelimit::RedisLimiter::new(conn.clone())),
            None => Arc::new(crate::ratelimit::MemoryLimiter::default()),
        };
        let payments: Option<Arc<dyn PaymentGateway>> = match &config.stripe_secret_key {
            Some(key) => Some(Arc::new(StripeGateway::new(
                &config.stripe_api_base,
                key.clone(),
            )?)),
            None => {
                tracing::info!("billing is off: STRIPE_SECRET_KEY is not set");
                None
            }
        };
        let auth = Authenticator::new(
            JwtKeys::new(&secret, ttl),
            store.sessions.clone(),
            clock.clone(),
            events.clone(),
        );
        Ok(App {
            otp_key: OtpKey::derive(&secret),
            otp_policy: IssuePolicy::default(),
            sms,
            region,
            allowed_regions,
            quota: QuotaPolicy {
                basic: Some(config.basic_daily_limit),
                pro: config.pro_daily_limit,
            },
            redis,
            database_gate: DatabaseGate::new(store.health.clone()),
            events,
            user_cache,
            progress,
            stops: crate::replies::stops::Stops::default(),
            ai,
            ai_pause,
            objects: Arc::new(objects),
            payments,
            pro_price: tokio::sync::OnceCell::new(),
            limiter,
            metrics: crate::metrics::handle(),
            stopping: tokio::sync::watch::Sender::new(false),
            auth,
            store,
            clock,
            config,
        })
    }
}

impl App {
    /// The base of links back to this service (Checkout's return pages).
    pub(crate) fn public_url(&self) -> String {
        match &self.config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}:{}", self.config.host, self.config.port),
        }
    }

    /// Starts shutting down: event streams end, workers stop claiming.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// A receiver that turns true when shutdown begins.
    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Completes when shutdown begins.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// An ISO 3166 region code of the setting `name` (`IN`, `us`).
pub(crate) fn parse_region(name: &str, code: &str) -> anyhow::Result<phonenumber::country::Id> {
    code.trim()
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .map_err(|_| anyhow::anyhow!("{name} takes ISO 3166 region codes such as IN, got {code:?}"))
}

/// What names the AI project whose rate limit the processes share: the endpoint and the key.
fn ai_project(config: &Config) -> String {
    let key = config
        .gemini_api_key
        .as_ref()
        .map(crate::config::Secret::expose)
        .unwrap_or_default();
    format!("{}\n{key}", config.gemini_base_url)
}

/// The configured AI provider: Gemini when a key is set (or `AI_PROVIDER=gemini`), else the
/// offline `echo` provider, announced loudly.
fn ai_provider(config: &Config) -> anyhow::Result<Arc<dyn AiProvider>> {
    let kind = config
        .ai_provider
        .unwrap_or(if config.gemini_api_key.is_some() {
            AiProviderKind::Gemini
        } else {
            AiProviderKind::Echo
        });
    match kind {
        AiProviderKind::Gemini => {
            let key = config
                .gemini_api_key
                .clone()
                .context("AI_PROVIDER=gemini needs GEMINI_API_KEY")?;
            tracing::info!(model = %config.gemini_model, "AI provider: Gemini");
            Ok(Arc::new(GeminiProvider::new(
                &config.gemini_base_url,
                &config.gemini_model,
                key,
            )?))
        }
        AiProviderKind::Echo => {
            tracing::warn!(
                "AI provider: ECHO (offline). Replies are generated locally and only repeat \
                 the prompt. Set GEMINI_API_KEY to use Gemini."
            );
            Ok(Arc::new(EchoProvider {
                pace: std::time::Duration::from_millis(config.echo_chunk_delay_ms),
            }))
        }
    }
}

async fn connect_redis(client: redis::Client) -> anyhow::Result<redis::aio::ConnectionManager> {
    // Fail fast: a command waits at most 2 s, and a lost connection is retried in the
    // background by the manager rather than stalling requests.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_response_timeout(Some(std::time::Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(std::time::Duration::from_millis(500));
    redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .context("connecting to Redis (REDIS_URL)")
}
