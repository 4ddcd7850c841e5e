//! The Twilio adapter of the SMS port: one `POST /2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded (`To`, `Body`, and `From` or `MessagingServiceSid`), HTTP Basic auth with the
//! account SID and auth token, and a timeout. No retries: a failed send is answered at once
//! (the user may ask again, their cooldown unspent) rather than hammering a struggling gateway.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use serde::Deserialize;

use super::sms::{self, SmsError, SmsSender};
use crate::config::{Config, Secret};
use crate::users::model::MobileNumber;

/// Twilio error codes that mean the `To` number itself is wrong (the user's mistake):
/// 21211 invalid 'To' number, 21217 number does not appear valid, 21614 not a mobile number.
const INVALID_TO: [u64; 3] = [21211, 21217, 21614];

/// Who the SMS comes from.
enum Sender {
    From(String),
    MessagingService(String),
}

pub(crate) struct TwilioSender {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: Secret,
    sender: Sender,
}

/// Twilio's error body (`{"code": 21211, "message": "...", "more_info": "...", "status": 400}`).
#[derive(Deserialize)]
struct TwilioError {
    code: Option<u64>,
}

impl TwilioSender {
    /// Reads the `TWILIO_*` settings; a missing one is a start-up error, not a failed SMS later.
    pub(crate) fn from_config(config: &Config) -> anyhow::Result<Self> {
        let account_sid = config
            .twilio_account_sid
            .clone()
            .filter(|sid| !sid.trim().is_empty())
            .context("OTP_DELIVERY=twilio needs TWILIO_ACCOUNT_SID")?;
        let auth_token = config
            .twilio_auth_token
            .clone()
            .context("OTP_DELIVERY=twilio needs TWILIO_AUTH_TOKEN")?;
        let sender = match (&config.twilio_messaging_service_sid, &config.twilio_from) {
            (Some(service), _) => Sender::MessagingService(service.clone()),
            (None, Some(from)) => Sender::From(from.clone()),
            (None, None) => anyhow::bail!(
                "OTP_DELIVERY=twilio needs TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID"
            ),
        };
        let timeout = Duration::from_millis(config.twilio_timeout_ms);
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .build()?;
        let messages_url = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            config.twilio_api_base.trim_end_matches('/')
        );
        Ok(Self {
            http,
            messages_url,
            account_sid,
            auth_token,
            sender,
        })
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    async fn send_code(&self, to: &MobileNumber, code: &str) -> Result<(), SmsError> {
        let body = sms::message(code);
        let (sender_field, sender_value) = match &self.sender {
            Sender::From(from) => ("From", from.as_str()),
            Sender::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let form = [
            ("To", to.as_str()),
            (sender_field, sender_value),
            ("Body", body.as_str()),
        ];
        let started = std::time::Instant::now();
        let response = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|err| {
                let why = if err.is_timeout() {
                    "timed out"
                } else {
                    "unreachable"
                };
                SmsError::Unavailable(format!("Twilio {why}: {}", err.without_url()))
            });
        metrics::histogram!("gemchat_sms_send_seconds").record(started.elapsed().as_secs_f64());
        let response = response?;
        let status = response.status();
        if status.is_success() {
            metrics::counter!("gemchat_sms_sent_total", "outcome" => "accepted").increment(1);
            return Ok(());
        }
        // The body is read for its error code only; its message may repeat the number, so it
        // is not logged.
        let code = response
            .json::<TwilioError>()
            .await
            .ok()
            .and_then(|error| error.code);
        if code.is_some_and(|code| INVALID_TO.contains(&code)) {
            metrics::counter!("gemchat_sms_sent_total", "outcome" => "invalid_number").increment(1);
            return Err(SmsError::InvalidNumber);
        }
        metrics::counter!("gemchat_sms_sent_total", "outcome" => "failed").increment(1);
        let code = code.map_or_else(|| "none".to_owned(), |code| code.to_string());
        Err(SmsError::Unavailable(format!(
            "Twilio answered HTTP {status}, error code {code}"
        )))
    }
}
