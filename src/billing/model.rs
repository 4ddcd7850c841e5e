//! Billing domain: subscription statuses and the entitlement they grant, Stripe events as the
//! changes they ask for, and the pure rule that merges a change into what is stored.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::users::model::UserId;

/// A Stripe subscription status; unknown values are kept, never rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
    Other(String),
}

impl SubscriptionStatus {
    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            other => Self::Other(other.to_owned()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Unpaid => "unpaid",
            Self::Paused => "paused",
            Self::Other(value) => value,
        }
    }

    /// A subscription in this status never comes back: later events cannot revive it.
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, Self::Canceled | Self::IncompleteExpired)
    }

    /// The user already pays (or owes) for Pro: a second checkout would double-charge.
    pub(crate) fn blocks_checkout(&self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue)
    }
}

/// The entitlement of an open-ended subscription (active, trialing): until Stripe says
/// otherwise.
pub(crate) fn forever() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Until when a subscription grants Pro: active and trialing without end, past_due until its
/// period ends, anything else not at all.
pub(crate) fn entitlement(
    status: &SubscriptionStatus,
    current_period_end: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match status {
        SubscriptionStatus::Active | SubscriptionStatus::Trialing => Some(forever()),
        SubscriptionStatus::PastDue => current_period_end,
        _ => None,
    }
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub(crate) user_id: Option<UserId>,
    pub customer_id: String,
    pub status: SubscriptionStatus,
    pub(crate) price_id: Option<String>,
    pub(crate) current_period_end: Option<DateTime<Utc>>,
    pub(crate) cancel_at_period_end: bool,
    pub pro_until: Option<DateTime<Utc>>,
    /// `created` of the newest event applied (Unix seconds).
    pub event_created: i64,
}

/// What an event (or an API response) says about one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionUpdate {
    pub id: String,
    pub customer: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub price_id: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: Option<bool>,
    /// The user the event names (client reference or metadata), not yet checked to exist.
    pub user: Option<UserId>,
    /// When Stripe produced this state (Unix seconds).
    pub created: i64,
    /// A hint rather than the subscription's state (a completed checkout): it may create the
    /// row and fill in links, but never overrides a status Stripe reported.
    pub weak: bool,
}

/// A Stripe event, reduced to what billing acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub created: i64,
    /// A customer to link to `user` (from a completed checkout).
    pub customer_link: Option<(UserId, String)>,
    pub update: Option<SubscriptionUpdate>,
}

fn user_id(value: Option<&Value>) -> Option<UserId> {
    value
        .and_then(Value::as_str)
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .map(UserId)
}

/// An id field that may be a string or an expanded object.
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) => Some(id.clone()),
        Value::Object(object) => object.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn timestamp(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_i64)
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
}

/// Reads a subscription object (from an event or an API answer) as an update made at
/// `created`. `current_period_end` moved from the subscription to its items in API version
/// 2025-03-31: read both.
pub(crate) fn subscription_from_object(object: &Value, created: i64) -> Option<SubscriptionUpdate> {
    let items: Vec<&Value> = object["items"]["data"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let period_end = timestamp(object.get("current_period_end")).or_else(|| {
        items
            .iter()
            .filter_map(|item| timestamp(item.get("current_period_end")))
            .max()
    });
    Some(SubscriptionUpdate {
        id: object.get("id")?.as_str()?.to_owned(),
        customer: id_of(object.get("customer")),
        status: object
            .get("status")
            .and_then(Value::as_str)
            .map(SubscriptionStatus::parse),
        price_id: items.first().and_then(|item| id_of(item.get("price"))),
        current_period_end: period_end,
        cancel_at_period_end: object.get("cancel_at_period_end").and_then(Value::as_bool),
        user: user_id(object["metadata"].get("user_id")),
        created,
        weak: false,
    })
}

/// Parses a verified webhook body. Unknown event types parse to an event with no update.
pub(crate) fn parse_event(body: &[u8]) -> Result<StripeEvent, String> {
    let event: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let id = event["id"].as_str().ok_or("no event id")?.to_owned();
    let kind = event["type"].as_str().ok_or("no event type")?.to_owned();
    let created = event["created"].as_i64().unwrap_or(0);
    let object = &event["data"]["object"];
    let mut parsed = StripeEvent {
        id,
        kind: kind.clone(),
        created,
        customer_link: None,
        update: None,
    };
    match kind.as_str() {
        "checkout.session.completed" => {
            let user = user_id(object.get("client_reference_id"))
                .or_else(|| user_id(object["metadata"].get("user_id")));
            let customer = id_of(object.get("customer"));
            if let (Some(user), Some(customer)) = (user, customer.clone()) {
                parsed.customer_link = Some((user, customer));
            }
            let paid = matches!(
                object["payment_status"].as_str(),
                Some("paid" | "no_payment_required")
            );
            if let Some(subscription) = id_of(object.get("subscription")) {
                parsed.update = Some(SubscriptionUpdate {
                    id: subscription,
                    customer,
                    status: paid.then_some(SubscriptionStatus::Active),
                    user,
                    created,
                    weak: true,
                    ..SubscriptionUpdate::default()
                });
            }
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => {
            parsed.update = subscription_from_object(object, created);
        }
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
            // Older API versions name the subscription on the invoice, newer ones under
            // `parent.subscription_details`.
            let subscription = id_of(object.get("subscription"))
                .or_else(|| id_of(object["parent"]["subscription_details"].get("subscription")));
            if let Some(subscription) = subscription {
                let status = if kind == "invoice.payment_failed" {
                    SubscriptionStatus::PastDue
                } else {
                    SubscriptionStatus::Active
                };
                parsed.update = Some(SubscriptionUpdate {
                    id: subscription,
                    customer: id_of(object.get("customer")),
                    status: Some(status),
                    created,
                    ..SubscriptionUpdate::default()
                });
            }
        }
        _ => {}
    }
    Ok(parsed)
}

/// Merges `update` into the stored subscription (if any), with `user` the owner resolved for
/// it. `None` when there is nothing to store. Older events never overwrite newer state, and a
/// terminal status is final; links (user, customer) only ever fill gaps.
pub(crate) fn merge(
    existing: Option<&Subscription>,
    update: &SubscriptionUpdate,
    user: Option<UserId>,
) -> Option<Subscription> {
    let Some(existing) = existing else {
        let status = update.status.clone()?;
        let customer_id = update.customer.clone()?;
        return Some(Subscription {
            id: update.id.clone(),
            user_id: user,
            customer_id,
            pro_until: entitlement(&status, update.current_period_end),
            status,
            price_id: update.price_id.clone(),
            current_period_end: update.current_period_end,
            cancel_at_period_end: update.cancel_at_period_end.unwrap_or(false),
            // A hint is older than anything Stripe says about the subscription itself.
            event_created: if update.weak {
                i64::MIN
            } else {
                update.created
            },
        });
    };
    let mut merged = existing.clone();
    if merged.user_id.is_none() {
        merged.user_id = user;
    }
    let newer = !update.weak && update.created >= existing.event_created;
    if newer && !existing.status.is_terminal() {
        if let Some(status) = &update.status {
            merged.status = status.clone();
        }
        merged.price_id = update.price_id.clone().or(merged.price_id);
        merged.current_period_end = update.current_period_end.or(merged.current_period_end);
        if let Some(cancel) = update.cancel_at_period_end {
            merged.cancel_at_period_end = cancel;
        }
        merged.event_created = update.created;
    }
    merged.pro_until = entitlement(&merged.status, merged.current_period_end);
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, created: i64, object: Value) -> Vec<u8> {
        json!({"id": format!("evt_{created}"), "object": "event", "type": kind, "created": created,
               "data": {"object": object}})
        .to_string()
        .into_bytes()
    }

    fn subscription_object(status: &str, period_end: i64) -> Value {
        json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
               "cancel_at_period_end": false, "metadata": {"user_id": "0190a000-0000-7000-8000-000000000001"},
               "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_pro"},
                         "current_period_start": period_end - 2_592_000, "current_period_end": period_end}]}})
    }

    fn update_of(body: &[u8]) -> SubscriptionUpdate {
        parse_event(body)
            .ok()
            .and_then(|e| e.update)
            .unwrap_or_default()
    }

    #[test]
    fn subscription_events_parse_with_the_period_end_from_items() {
        let update = update_of(&event(
            "customer.subscription.updated",
            100,
            subscription_object("active", 1_680_116_389),
        ));
        assert_eq!(update.id, "sub_1");
        assert_eq!(update.customer.as_deref(), Some("cus_1"));
        assert_eq!(update.status, Some(SubscriptionStatus::Active));
        assert_eq!(update.price_id.as_deref(), Some("price_pro"));
        assert_eq!(
            update.current_period_end.map(|t| t.timestamp()),
            Some(1_680_116_389)
        );
        assert!(update.user.is_some());
        let mut older_api = subscription_object("active", 1);
        older_api["current_period_end"] = json!(1_700_000_000);
        assert_eq!(
            update_of(&event("customer.subscription.updated", 1, older_api))
                .current_period_end
                .map(|t| t.timestamp()),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn checkout_and_invoice_events_parse() {
        let checkout = parse_event(&event(
            "checkout.session.completed",
            5,
            json!({"id": "cs_1", "mode": "subscription", "payment_status": "paid",
                   "client_reference_id": "0190a000-0000-7000-8000-000000000001",
                   "customer": "cus_1", "subscription": "sub_1"}),
        ))
        .ok();
        let checkout = checkout.unwrap_or_else(|| unreachable!());
        assert_eq!(
            checkout.customer_link.as_ref().map(|(_, c)| c.as_str()),
            Some("cus_1")
        );
        let update = checkout.update.unwrap_or_default();
        assert!(update.weak);
        assert_eq!(update.status, Some(SubscriptionStatus::Active));

        let newer_invoice = update_of(&event(
            "invoice.payment_failed",
            7,
            json!({"id": "in_1", "customer": "cus_1", "parent": {"subscription_details": {"subscription": "sub_1"}}}),
        ));
        assert_eq!(
            (newer_invoice.id.as_str(), newer_invoice.status),
            ("sub_1", Some(SubscriptionStatus::PastDue))
        );
        let unknown = parse_event(&event("charge.succeeded", 1, json!({"id": "ch_1"}))).ok();
        assert!(unknown.is_some_and(|e| e.update.is_none()));
        assert!(parse_event(b"not json").is_err());
        assert!(parse_event(br#"{"type": "x"}"#).is_err());
    }

    fn stored(status: SubscriptionStatus, event_created: i64) -> Subscription {
        let period_end = Utc.timestamp_opt(2_000_000_000, 0).single();
        Subscription {
            id: "sub_1".into(),
            user_id: None,
            customer_id: "cus_1".into(),
            pro_until: entitlement(&status, period_end),
            status,
            price_id: None,
            current_period_end: period_end,
            cancel_at_period_end: false,
            event_created,
        }
    }

    fn change(status: SubscriptionStatus, created: i64) -> SubscriptionUpdate {
        SubscriptionUpdate {
            id: "sub_1".into(),
            customer: Some("cus_1".into()),
            status: Some(status),
            created,
            ..SubscriptionUpdate::default()
        }
    }

    #[test]
    fn older_events_never_overwrite_newer_state() {
        let current = stored(SubscriptionStatus::PastDue, 200);
        let older = merge(
            Some(&current),
            &change(SubscriptionStatus::Active, 100),
            None,
        );
        assert_eq!(older.map(|s| s.status), Some(SubscriptionStatus::PastDue));
        let newer = merge(
            Some(&current),
            &change(SubscriptionStatus::Active, 300),
            None,
        );
        assert_eq!(
            newer.as_ref().map(|s| &s.status),
            Some(&SubscriptionStatus::Active)
        );
        assert_eq!(newer.and_then(|s| s.pro_until), Some(forever()));
    }

    #[test]
    fn a_canceled_subscription_stays_canceled() {
        let canceled = stored(SubscriptionStatus::Canceled, 200);
        let late = merge(
            Some(&canceled),
            &change(SubscriptionStatus::Active, 200),
            None,
        );
        assert_eq!(
            late.as_ref().map(|s| &s.status),
            Some(&SubscriptionStatus::Canceled)
        );
        assert_eq!(late.and_then(|s| s.pro_until), None);
    }

    #[test]
    fn a_checkout_hint_creates_but_never_overrides() {
        let hint = SubscriptionUpdate {
            weak: true,
            ..change(SubscriptionStatus::Active, 500)
        };
        let created = merge(None, &hint, Some(UserId::new()));
        assert_eq!(
            created.as_ref().map(|s| &s.status),
            Some(&SubscriptionStatus::Active)
        );
        // The first real event, however old, replaces the hint.
        let real = merge(
            created.as_ref(),
            &change(SubscriptionStatus::Incomplete, 10),
            None,
        );
        assert_eq!(
            real.as_ref().map(|s| &s.status),
            Some(&SubscriptionStatus::Incomplete)
        );
        assert!(
            real.as_ref().is_some_and(|s| s.user_id.is_some()),
            "links are kept"
        );
        let stale_hint = merge(Some(&stored(SubscriptionStatus::Canceled, 10)), &hint, None);
        assert_eq!(
            stale_hint.map(|s| s.status),
            Some(SubscriptionStatus::Canceled)
        );
        assert_eq!(
            merge(
                None,
                &SubscriptionUpdate {
                    status: None,
                    ..hint
                },
                None
            ),
            None
        );
    }

    #[test]
    fn entitlement_follows_the_status() {
        let end = Utc.timestamp_opt(1_900_000_000, 0).single();
        assert_eq!(
            entitlement(&SubscriptionStatus::Active, end),
            Some(forever())
        );
        assert_eq!(
            entitlement(&SubscriptionStatus::Trialing, None),
            Some(forever())
        );
        assert_eq!(entitlement(&SubscriptionStatus::PastDue, end), end);
        for status in [
            "canceled",
            "unpaid",
            "incomplete_expired",
            "incomplete",
            "paused",
            "new_thing",
        ] {
            assert_eq!(
                entitlement(&SubscriptionStatus::parse(status), end),
                None,
                "{status}"
            );
        }
    }
}
