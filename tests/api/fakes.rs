//! Fakes of outside services that speak their real wire formats over real HTTP (wiremock).

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub const GEMINI_KEY: &str = "test-gemini-key";
pub const GEMINI_MODEL: &str = "gemini-2.5-flash";

/// A Gemini API on a local port.
pub struct FakeGemini {
    pub server: MockServer,
}

impl FakeGemini {
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Matches a streaming call as the adapter must make it: the model's
    /// `streamGenerateContent` with `alt=sse` and the key in `x-goog-api-key`.
    pub fn stream_call() -> MockBuilder {
        Mock::given(method("POST"))
            .and(path(format!(
                "/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"
            )))
            .and(query_param("alt", "sse"))
            .and(header("x-goog-api-key", GEMINI_KEY))
    }

    /// A Gemini whose first streaming call hangs for two minutes (long enough to kill or stop
    /// the worker that made it); every later call answers `then` at once.
    pub async fn hanging_once(then: &str) -> Self {
        let gemini = Self::start().await;
        Self::stream_call()
            .respond_with(sse_reply(&["never seen"]).set_delay(std::time::Duration::from_secs(120)))
            .up_to_n_times(1)
            .mount(&gemini.server)
            .await;
        Self::stream_call()
            .respond_with(sse_reply(&[then]))
            .mount(&gemini.server)
            .await;
        gemini
    }

    /// Matches a one-piece call (`generateContent`, for titles), key in `x-goog-api-key`.
    pub fn complete_call() -> MockBuilder {
        Mock::given(method("POST"))
            .and(path(format!(
                "/v1beta/models/{GEMINI_MODEL}:generateContent"
            )))
            .and(header("x-goog-api-key", GEMINI_KEY))
    }

    /// The request bodies Gemini received, in order.
    pub async fn requests(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }
}

/// A 200 streaming answer: one SSE event per piece, the last with `finishReason: STOP` and
/// usage, as Gemini sends them.
pub fn sse_reply(pieces: &[&str]) -> ResponseTemplate {
    let mut body = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let mut event = json!({
            "candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 42, "totalTokenCount": 42},
            "modelVersion": "gemini-2.5-flash-001",
        });
        if last {
            event["candidates"][0]["finishReason"] = json!("STOP");
            event["usageMetadata"] =
                json!({"promptTokenCount": 42, "candidatesTokenCount": 57, "totalTokenCount": 99});
        }
        body.push_str(&format!("data: {event}\r\n\r\n"));
    }
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(body)
}

/// A streaming answer whose prompt was blocked by the safety filters.
pub fn sse_blocked() -> ResponseTemplate {
    let event = json!({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        "modelVersion": "gemini-2.5-flash-001",
    });
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(format!("data: {event}\r\n\r\n"))
}

/// A Google API error answer.
pub fn api_error(
    status: u16,
    google_status: &str,
    message: &str,
    details: Value,
) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"code": status, "message": message, "status": google_status, "details": details}
    }))
}

/// A 429 with the `RetryInfo` delay Gemini sends.
pub fn rate_limited(retry_delay: &str) -> ResponseTemplate {
    api_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota. Please retry in a while.",
        json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        ]),
    )
}

pub const STRIPE_KEY: &str = "sk_test_gemchat";
pub const PRO_PRICE: &str = "price_pro";

/// The Stripe API on a local port: form-encoded requests in, JSON out.
pub struct FakeStripe {
    pub server: MockServer,
}

/// Matches a call as the adapter must make it: bearer key and pinned API version.
pub fn stripe_call(verb: &str, route: &str) -> MockBuilder {
    Mock::given(method(verb))
        .and(path(route.to_owned()))
        .and(header(
            "authorization",
            format!("Bearer {STRIPE_KEY}").as_str(),
        ))
        .and(header(
            "stripe-version",
            gemchat::billing::stripe::API_VERSION,
        ))
}

/// A request's form body as a map.
pub fn form(request: &wiremock::Request) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

/// Answers `POST /v1/subscriptions/{id}` with the subscription as updated by the form.
struct SubscriptionUpdater;

impl wiremock::Respond for SubscriptionUpdater {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let cancel = form(request)
            .get("cancel_at_period_end")
            .map(String::as_str)
            == Some("true");
        let id = request
            .url
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        ResponseTemplate::new(200).set_body_json(json!({
            "id": id, "object": "subscription", "customer": "cus_new_1", "status": "active",
            "cancel_at_period_end": cancel,
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": PRO_PRICE},
                      "current_period_end": 4_102_444_800_i64}]}
        }))
    }
}

impl FakeStripe {
    /// A Stripe that answers every call the adapter makes.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        stripe_call("POST", "/v1/customers")
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "cus_new_1", "object": "customer"})),
            )
            .mount(&server)
            .await;
        stripe_call("POST", "/v1/checkout/sessions")
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "cs_test_123", "object": "checkout.session", "mode": "subscription", "status": "open",
                "url": "https://checkout.stripe.com/c/pay/cs_test_123"})))
            .mount(&server)
            .await;
        stripe_call("GET", &format!("/v1/prices/{PRO_PRICE}"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": PRO_PRICE, "object": "price", "unit_amount": 999, "currency": "usd",
                "recurring": {"interval": "month"}})))
            .mount(&server)
            .await;
        stripe_call("POST", "/v1/billing_portal/sessions")
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "bps_1", "object": "billing_portal.session",
                "url": "https://billing.stripe.com/p/session/test_1"})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(wiremock::matchers::path_regex(
                "^/v1/subscriptions/sub_[A-Za-z0-9_]+$",
            ))
            .respond_with(SubscriptionUpdater)
            .mount(&server)
            .await;
        Self { server }
    }

    /// The requests received on `route`, in order.
    pub async fn calls(&self, route: &str) -> Vec<wiremock::Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == route)
            .collect()
    }
}

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "twilio-test-auth-token";
pub const TWILIO_FROM: &str = "+15005550006";

/// Twilio's Messages API on a local port: form-encoded requests with Basic auth in, JSON out.
pub struct FakeTwilio {
    pub server: MockServer,
}

impl FakeTwilio {
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// Points `config` at this Twilio, sending from [`TWILIO_FROM`].
    pub fn configure(&self, config: &mut gemchat::config::Config) {
        config.otp_delivery = gemchat::config::OtpDelivery::Twilio;
        config.twilio_api_base = self.server.uri();
        config.twilio_account_sid = Some(TWILIO_SID.into());
        config.twilio_auth_token = Some(gemchat::config::Secret::new(TWILIO_TOKEN));
        config.twilio_from = Some(TWILIO_FROM.into());
    }

    /// Matches a send as the adapter must make it: the account's Messages resource, Basic auth
    /// with the SID and token, a form body.
    pub fn send_call() -> MockBuilder {
        use base64::Engine;
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"));
        Mock::given(method("POST"))
            .and(path(format!(
                "/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
            )))
            .and(header(
                "authorization",
                format!("Basic {credentials}").as_str(),
            ))
            .and(header("content-type", "application/x-www-form-urlencoded"))
    }

    /// Accepts every send, as Twilio does: 201 and the queued message.
    pub async fn accept(&self) {
        Self::send_call()
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "sid": "SM0123456789abcdef0123456789abcdef", "account_sid": TWILIO_SID,
                "status": "queued", "num_segments": "1", "direction": "outbound-api",
                "error_code": null, "error_message": null, "uri": "/2010-04-01/Accounts/x/Messages/SM1.json"
            })))
            .mount(&self.server)
            .await;
    }

    /// Refuses every send with Twilio's error body.
    pub async fn refuse(&self, status: u16, code: u32, message: &str) {
        Self::send_call()
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "code": code, "message": message, "status": status,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}")
            })))
            .mount(&self.server)
            .await;
    }

    /// The form bodies of the sends received, in order.
    pub async fn sends(&self) -> Vec<std::collections::HashMap<String, String>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(form)
            .collect()
    }

    /// The six-digit code in the body of the `n`th send.
    pub async fn code_sent(&self, n: usize) -> String {
        let sends = self.sends().await;
        let body = sends
            .get(n)
            .and_then(|s| s.get("Body"))
            .cloned()
            .unwrap_or_default();
        body.split(|c: char| !c.is_ascii_digit())
            .find(|part| part.len() == 6)
            .unwrap_or_else(|| panic!("no code in SMS {n}: {body:?}"))
            .to_owned()
    }
}
