//! Repository contract of billing, on both databases: webhook events apply once, in order,
//! linking subscriptions to users by id or customer; the tier follows what is stored.

use chrono::Duration;
use gemchat::billing::model::{StripeEvent, SubscriptionStatus, SubscriptionUpdate};
use gemchat::billing::repo::Applied;
use gemchat::storage::error::StoreError;
use gemchat::users::model::{Tier, UserId};

use crate::backend_tests;
use crate::harness::Backend;
use crate::storage::{Fixture, fixture, new_user, now};

backend_tests!(
    an_event_applies_once_and_links_the_customer_its_checkout_named,
    older_events_never_undo_newer_ones_and_the_tier_follows,
    concurrent_customer_links_agree_on_one,
    a_live_subscription_is_preferred_to_a_newer_ended_one,
);

async fn signed_up(f: &Fixture) -> UserId {
    let user = new_user();
    f.store.users.insert(&user).await.expect("insert user");
    user.id
}

fn update(
    id: &str,
    customer: &str,
    status: SubscriptionStatus,
    created: i64,
) -> SubscriptionUpdate {
    SubscriptionUpdate {
        id: id.into(),
        customer: Some(customer.into()),
        status: Some(status),
        price_id: Some("price_pro".into()),
        current_period_end: Some(now() + Duration::days(30)),
        created,
        ..SubscriptionUpdate::default()
    }
}

fn event(id: &str, created: i64, update: SubscriptionUpdate) -> StripeEvent {
    StripeEvent {
        id: id.into(),
        kind: "customer.subscription.updated".into(),
        created,
        customer_link: None,
        update: Some(update),
    }
}

async fn tier(f: &Fixture, user: UserId) -> Tier {
    let found = f.store.users.find_by_id(user, now()).await.expect("find");
    found.expect("the user").tier
}

async fn an_event_applies_once_and_links_the_customer_its_checkout_named(backend: Backend) {
    let f = fixture(backend).await;
    let user = signed_up(&f).await;
    let checkout = StripeEvent {
        id: "evt_checkout".into(),
        kind: "checkout.session.completed".into(),
        created: 100,
        customer_link: Some((user, "cus_1".into())),
        update: None,
    };
    let billing = &f.store.billing;
    let applied = billing.apply_event(&checkout, now()).await.expect("apply");
    assert_eq!(applied, Applied::Applied { user: Some(user) });
    let again = billing.apply_event(&checkout, now()).await.expect("apply");
    assert_eq!(again, Applied::Duplicate);
    assert_eq!(
        billing.customer_of(user).await.expect("customer"),
        Some("cus_1".into())
    );
    assert_eq!(tier(&f, user).await, Tier::Basic, "no subscription yet");

    // An event naming only the customer reaches the user through the link.
    let active = event(
        "evt_active",
        110,
        update("sub_1", "cus_1", SubscriptionStatus::Active, 110),
    );
    let applied = billing.apply_event(&active, now()).await.expect("apply");
    assert_eq!(applied, Applied::Applied { user: Some(user) });
    let stored = billing.subscription_of(user).await.expect("read");
    let stored = stored.expect("the subscription");
    assert_eq!(stored.status, SubscriptionStatus::Active);
    assert_eq!(stored.customer_id, "cus_1");
    assert_eq!(tier(&f, user).await, Tier::Pro);
}

async fn older_events_never_undo_newer_ones_and_the_tier_follows(backend: Backend) {
    let f = fixture(backend).await;
    let user = signed_up(&f).await;
    let billing = &f.store.billing;
    let mut active = update("sub_2", "cus_2", SubscriptionStatus::Active, 200);
    active.user = Some(user);
    billing.apply_update(&active, now()).await.expect("apply");
    assert_eq!(tier(&f, user).await, Tier::Pro);
    let canceled = event(
        "evt_canceled",
        300,
        update("sub_2", "cus_2", SubscriptionStatus::Canceled, 300),
    );
    billing.apply_event(&canceled, now()).await.expect("apply");
    let late = event(
        "evt_late_active",
        250,
        update("sub_2", "cus_2", SubscriptionStatus::Active, 250),
    );
    billing.apply_event(&late, now()).await.expect("apply");
    let stored = billing.subscription_of(user).await.expect("read");
    let stored = stored.expect("the subscription");
    assert_eq!(stored.status, SubscriptionStatus::Canceled);
    assert_eq!(stored.event_created, 300);
    assert_eq!(stored.pro_until, None);
    assert_eq!(tier(&f, user).await, Tier::Basic);
    assert_eq!(
        billing.customer_of(user).await.expect("customer"),
        Some("cus_2".into()),
        "the subscription's customer is linked to its user"
    );
}

async fn concurrent_customer_links_agree_on_one(backend: Backend) {
    let f = fixture(backend).await;
    let user = signed_up(&f).await;
    let billing = &f.store.billing;
    let (a, b) = tokio::join!(
        billing.link_customer(user, "cus_a"),
        billing.link_customer(user, "cus_b")
    );
    let (a, b) = (a.expect("link"), b.expect("link"));
    assert_eq!(a, b, "both creators get the one stored");
    assert_eq!(billing.customer_of(user).await.expect("customer"), Some(a));
    let nobody = billing.link_customer(UserId::new(), "cus_c").await;
    assert!(matches!(nobody, Err(StoreError::NotFound)), "{nobody:?}");
    assert_eq!(
        billing.customer_of(UserId::new()).await.expect("customer"),
        None
    );
}

async fn a_live_subscription_is_preferred_to_a_newer_ended_one(backend: Backend) {
    let f = fixture(backend).await;
    let user = signed_up(&f).await;
    let billing = &f.store.billing;
    for (id, status, created) in [
        ("sub_live", SubscriptionStatus::PastDue, 400),
        ("sub_ended", SubscriptionStatus::Canceled, 500),
    ] {
        let mut change = update(id, "cus_3", status, created);
        change.user = Some(user);
        billing.apply_update(&change, now()).await.expect("apply");
    }
    let stored = billing.subscription_of(user).await.expect("read");
    assert_eq!(stored.expect("one").id, "sub_live");
    assert_eq!(
        tier(&f, user).await,
        Tier::Pro,
        "past due keeps Pro to the period's end"
    );
}
