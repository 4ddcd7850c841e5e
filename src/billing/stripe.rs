//! The Stripe adapter: REST over reqwest, form-encoded bodies (nested fields in brackets),
//! `Authorization: Bearer`, a pinned API version, idempotency keys on creations, and a timeout
//! on every call. Stripe's error objects are logged, never passed on.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::gateway::{CheckoutRequest, CheckoutSession, GatewayError, PaymentGateway, Price};
use super::model::{SubscriptionUpdate, subscription_from_object};
use crate::config::Secret;

/// The API version whose payload shapes this code reads.
pub const API_VERSION: &str = "2025-03-31.basil";
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct StripeGateway {
    http: reqwest::Client,
    base: String,
    key: Secret,
}

impl StripeGateway {
    pub(crate) fn new(base: &str, key: Secret) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// Makes one call; Stripe's answer with its status, whatever the status.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Result<(reqwest::StatusCode, Value), GatewayError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key.expose())
            .header("Stripe-Version", API_VERSION);
        if !form.is_empty() {
            request = request.form(form);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.map_err(|err| {
            GatewayError(format!("Stripe {path}: unreachable: {}", err.without_url()))
        })?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|err| {
            GatewayError(format!(
                "Stripe {path}: unreadable answer: {}",
                err.without_url()
            ))
        })?;
        Ok((status, body))
    }

    /// Makes one call that must succeed.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, GatewayError> {
        let (status, body) = self.send(method, path, form, idempotency_key).await?;
        if !status.is_success() {
            return Err(refused(path, status, &body));
        }
        Ok(body)
    }

    /// Deletes a Stripe object; one that is already gone (404) counts as deleted.
    async fn delete(&self, path: &str) -> Result<(), GatewayError> {
        let (status, body) = self.send(reqwest::Method::DELETE, path, &[], None).await?;
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(refused(path, status, &body))
        }
    }
}

/// Stripe's error object, for the log.
fn refused(path: &str, status: reqwest::StatusCode, body: &Value) -> GatewayError {
    let error = &body["error"];
    GatewayError(format!(
        "Stripe {path}: HTTP {status}: {} {} {}",
        error["type"].as_str().unwrap_or("?"),
        error["code"].as_str().unwrap_or(""),
        error["message"].as_str().unwrap_or("")
    ))
}

fn field(body: &Value, name: &str) -> Result<String, GatewayError> {
    body[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| GatewayError(format!("Stripe's answer has no {name}")))
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    async fn create_customer(
        &self,
        user_id: &str,
        phone: &str,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let body = self
            .call(
                reqwest::Method::POST,
                "/v1/customers",
                &[("phone", phone), ("metadata[user_id]", user_id)],
                Some(idempotency_key),
            )
            .await?;
        field(&body, "id")
    }

    async fn create_checkout_session(
        &self,
        request: &CheckoutRequest,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, GatewayError> {
        let form = [
            ("mode", "subscription"),
            ("customer", request.customer.as_str()),
            ("line_items[0][price]", request.price.as_str()),
            ("line_items[0][quantity]", "1"),
            ("client_reference_id", request.user_id.as_str()),
            ("metadata[user_id]", request.user_id.as_str()),
            (
                "subscription_data[metadata][user_id]",
                request.user_id.as_str(),
            ),
            ("success_url", request.success_url.as_str()),
            ("cancel_url", request.cancel_url.as_str()),
        ];
        let body = self
            .call(
                reqwest::Method::POST,
                "/v1/checkout/sessions",
                &form,
                Some(idempotency_key),
            )
            .await?;
        Ok(CheckoutSession {
            id: field(&body, "id")?,
            url: field(&body, "url")?,
        })
    }

    async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, GatewayError> {
        let body = self
            .call(
                reqwest::Method::POST,
                "/v1/billing_portal/sessions",
                &[("customer", customer), ("return_url", return_url)],
                None,
            )
            .await?;
        field(&body, "url")
    }

    async fn set_cancel_at_period_end(
        &self,
        subscription: &str,
        cancel: bool,
        idempotency_key: &str,
    ) -> Result<SubscriptionUpdate, GatewayError> {
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/subscriptions/{subscription}"),
                &[(
                    "cancel_at_period_end",
                    if cancel { "true" } else { "false" },
                )],
                Some(idempotency_key),
            )
            .await?;
        subscription_from_object(&body, 0)
            .ok_or_else(|| GatewayError("Stripe's answer is not a subscription".into()))
    }

    async fn cancel_subscription_now(&self, subscription: &str) -> Result<(), GatewayError> {
        self.delete(&format!("/v1/subscriptions/{subscription}"))
            .await
    }

    async fn delete_customer(&self, customer: &str) -> Result<(), GatewayError> {
        self.delete(&format!("/v1/customers/{customer}")).await
    }

    async fn price(&self, price_id: &str) -> Result<Price, GatewayError> {
        let body = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/prices/{price_id}"),
                &[],
                None,
            )
            .await?;
        Ok(Price {
            amount: body["unit_amount"]
                .as_i64()
                .ok_or_else(|| GatewayError("the price has no unit_amount".into()))?,
            currency: field(&body, "currency")?,
            interval: body["recurring"]["interval"]
                .as_str()
                .unwrap_or("month")
                .to_owned(),
        })
    }
}
