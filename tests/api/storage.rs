//! Contract tests of the repository ports: the same expectations on SQLite and PostgreSQL.
//! They are what keeps the two adapters equal.

use chrono::{Duration, DurationRound, Utc};
use gemchat::auth::model::{ClientInfo, Session, SessionId, SessionMethod};
use gemchat::auth::otp::{IssuePolicy, OtpPurpose, OtpRefusal};
use gemchat::auth::repo::{NewOtp, Replacing};
use gemchat::storage::Store;
use gemchat::storage::error::StoreError;
use gemchat::users::model::{MobileNumber, Tier, User, UserId};

use crate::backend_tests;
use crate::harness::{Backend, TestDb, random_mobile};

backend_tests!(
    users_round_trip_and_numbers_are_unique,
    otp_sends_follow_the_policy_even_when_concurrent,
    otp_attempts_count_and_codes_are_consumed_once,
    sessions_touch_list_and_revoke,
    a_password_change_revokes_every_session_and_starts_one,
    a_password_change_replaces_only_the_password_it_was_proven_with,
    usage_is_zero_without_a_row,
    processes_starting_together_both_come_up,
);

pub(crate) struct Fixture {
    pub(crate) store: Store,
    _db: TestDb,
}

pub(crate) async fn fixture(backend: Backend) -> Fixture {
    let db = TestDb::create(backend).await;
    let store = Store::connect(&db.url, true).await.expect("connect");
    Fixture { store, _db: db }
}

pub(crate) fn now() -> chrono::DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap_or_default()
}

pub(crate) fn new_user() -> User {
    let at = now();
    User {
        id: UserId::new(),
        mobile_number: MobileNumber::parse(&random_mobile(), phonenumber::country::Id::IN)
            .expect("valid"),
        name: Some("Contract".into()),
        password_hash: None,
        tier: Tier::Basic,
        disabled: false,
        is_admin: false,
        created_at: at,
        updated_at: at,
    }
}

fn session_for(user: UserId, at: chrono::DateTime<Utc>, ttl: Duration) -> Session {
    Session {
        id: SessionId::new(),
        user_id: user,
        method: SessionMethod::Otp,
        created_at: at,
        expires_at: at + ttl,
        last_used_at: at,
        client: ClientInfo {
            ip: Some("203.0.113.9".into()),
            user_agent: Some("ua".into()),
        },
    }
}

async fn users_round_trip_and_numbers_are_unique(backend: Backend) {
    let f = fixture(backend).await;
    let user = new_user();
    f.store.users.insert(&user).await.expect("insert");
    let found = f
        .store
        .users
        .find_by_id(user.id, now())
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(found.mobile_number, user.mobile_number);
    assert_eq!(found.name, user.name);
    assert_eq!(found.tier, Tier::Basic);
    assert_eq!(found.created_at, user.created_at);
    let by_mobile = f
        .store
        .users
        .find_by_mobile(&user.mobile_number, now())
        .await
        .expect("find");
    assert_eq!(by_mobile.map(|u| u.id), Some(user.id));

    let twin = User {
        id: UserId::new(),
        ..user.clone()
    };
    assert!(matches!(
        f.store.users.insert(&twin).await,
        Err(StoreError::Conflict)
    ));

    let renamed = f
        .store
        .users
        .update_name(user.id, "New", now())
        .await
        .expect("rename");
    assert_eq!(renamed.name.as_deref(), Some("New"));
    assert!(matches!(
        f.store.users.update_name(UserId::new(), "x", now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        f.store
            .users
            .find_by_id(UserId::new(), now())
            .await
            .expect("find")
            .is_none()
    );
}

fn otp_for(user: UserId, purpose: OtpPurpose, hash: &[u8], at: chrono::DateTime<Utc>) -> NewOtp {
    NewOtp {
        user_id: user,
        purpose,
        code_hash: hash.to_vec(),
        created_at: at,
        expires_at: at + Duration::minutes(5),
    }
}

async fn otp_sends_follow_the_policy_even_when_concurrent(backend: Backend) {
    let f = fixture(backend).await;
    let user = new_user();
    f.store.users.insert(&user).await.expect("insert");
    let at = now();
    let policy = IssuePolicy::default();
    let attempts = (0..8).map(|_| {
        let otps = f.store.otps.clone();
        tokio::spawn(async move { otps.reserve(user.id, at, &policy).await })
    });
    let mut sent = Vec::new();
    for attempt in futures::future::join_all(attempts).await {
        match attempt.expect("join").expect("store") {
            Ok(send) => sent.push(send),
            Err(OtpRefusal::Cooldown { .. }) => {}
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(
        sent.len(),
        1,
        "exactly one of eight concurrent sends passes the cooldown"
    );

    // A send given back (its SMS failed) spends no cooldown.
    f.store.otps.release(sent[0]).await.expect("release");
    let again = f.store.otps.reserve(user.id, at, &policy).await;
    assert!(matches!(again, Ok(Ok(_))), "{again:?}");

    let later = at + Duration::seconds(31);
    let again = f.store.otps.reserve(user.id, later, &policy).await;
    assert!(matches!(again, Ok(Ok(_))), "{again:?}");
    let cooling = f.store.otps.reserve(user.id, later, &policy).await;
    assert!(
        matches!(cooling, Ok(Err(OtpRefusal::Cooldown { .. }))),
        "{cooling:?}"
    );
}

/// Reserves a send and stores `otp` as delivered.
async fn issue(f: &Fixture, otp: &NewOtp) {
    f.store
        .otps
        .reserve(otp.user_id, otp.created_at, &IssuePolicy::default())
        .await
        .expect("store")
        .expect("sent");
    f.store.otps.store(otp).await.expect("store");
}

async fn otp_attempts_count_and_codes_are_consumed_once(backend: Backend) {
    let f = fixture(backend).await;
    let user = new_user();
    f.store.users.insert(&user).await.expect("insert");
    let at = now();
    assert!(
        f.store
            .otps
            .record_attempt(user.id, OtpPurpose::Login)
            .await
            .expect("store")
            .is_none()
    );
    let otp = otp_for(user.id, OtpPurpose::Login, b"hash-1", at);
    issue(&f, &otp).await;

    for expected in 1..=3 {
        let attempt = f
            .store
            .otps
            .record_attempt(user.id, OtpPurpose::Login)
            .await
            .expect("store");
        let attempt = attempt.expect("a live code");
        assert_eq!(attempt.attempts, expected);
        assert_eq!(attempt.code_hash, b"hash-1");
        assert_eq!(attempt.expires_at, otp.expires_at);
    }
    // The other purpose has no code.
    assert!(
        f.store
            .otps
            .record_attempt(user.id, OtpPurpose::Reset)
            .await
            .expect("store")
            .is_none()
    );
    assert!(
        !f.store
            .otps
            .consume(user.id, OtpPurpose::Login, b"other", at)
            .await
            .expect("store")
    );
    assert!(
        f.store
            .otps
            .consume(user.id, OtpPurpose::Login, b"hash-1", at)
            .await
            .expect("store")
    );
    assert!(
        !f.store
            .otps
            .consume(user.id, OtpPurpose::Login, b"hash-1", at)
            .await
            .expect("store")
    );
    assert!(
        f.store
            .otps
            .record_attempt(user.id, OtpPurpose::Login)
            .await
            .expect("store")
            .is_none()
    );

    // A new code replaces the old one and starts with no attempts.
    let replacement = otp_for(
        user.id,
        OtpPurpose::Login,
        b"hash-2",
        at + Duration::seconds(31),
    );
    issue(&f, &replacement).await;
    let attempt = f
        .store
        .otps
        .record_attempt(user.id, OtpPurpose::Login)
        .await
        .expect("store");
    assert_eq!(
        attempt.map(|a| (a.attempts, a.code_hash)),
        Some((1, b"hash-2".to_vec()))
    );
}

async fn sessions_touch_list_and_revoke(backend: Backend) {
    let f = fixture(backend).await;
    let (alice, bob) = (new_user(), new_user());
    f.store.users.insert(&alice).await.expect("insert");
    f.store.users.insert(&bob).await.expect("insert");
    let at = now();
    let older = session_for(alice.id, at, Duration::hours(1));
    let newer = session_for(alice.id, at, Duration::hours(1));
    let expired = session_for(alice.id, at - Duration::hours(2), Duration::hours(1));
    for s in [&older, &newer, &expired] {
        f.store.sessions.insert(s).await.expect("insert");
    }
    let later = at + Duration::seconds(90);
    assert_eq!(
        f.store
            .sessions
            .touch(older.id, later)
            .await
            .expect("touch"),
        Some(alice.id)
    );
    assert_eq!(
        f.store
            .sessions
            .touch(expired.id, later)
            .await
            .expect("touch"),
        None
    );
    assert_eq!(
        f.store
            .sessions
            .touch(SessionId::new(), later)
            .await
            .expect("touch"),
        None
    );

    let live = f
        .store
        .sessions
        .list_live(alice.id, later)
        .await
        .expect("list");
    let ids: Vec<_> = live.iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        vec![newer.id, older.id],
        "newest first, expired left out"
    );
    assert_eq!(live[1].last_used_at, later);
    assert_eq!(live[1].client.ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(live[1].method, SessionMethod::Otp);

    assert!(
        !f.store
            .sessions
            .revoke(bob.id, older.id, later)
            .await
            .expect("revoke")
    );
    assert!(
        f.store
            .sessions
            .revoke(alice.id, older.id, later)
            .await
            .expect("revoke")
    );
    assert!(
        !f.store
            .sessions
            .revoke(alice.id, older.id, later)
            .await
            .expect("revoke")
    );
    assert_eq!(
        f.store
            .sessions
            .touch(older.id, later)
            .await
            .expect("touch"),
        None
    );
    assert_eq!(
        f.store
            .sessions
            .list_live(alice.id, later)
            .await
            .expect("list")
            .len(),
        1
    );
}

async fn a_password_change_revokes_every_session_and_starts_one(backend: Backend) {
    let f = fixture(backend).await;
    let user = new_user();
    f.store.users.insert(&user).await.expect("insert");
    let at = now();
    let old = session_for(user.id, at, Duration::hours(1));
    f.store.sessions.insert(&old).await.expect("insert");
    let fresh = Session {
        method: SessionMethod::PasswordChange,
        ..session_for(user.id, at + Duration::seconds(1), Duration::hours(1))
    };
    f.store
        .sessions
        .set_password_and_restart("$argon2id$fake", Replacing::Exactly(None), &fresh)
        .await
        .expect("change");
    assert_eq!(
        f.store.sessions.touch(old.id, at).await.expect("touch"),
        None
    );
    assert_eq!(
        f.store.sessions.touch(fresh.id, at).await.expect("touch"),
        Some(user.id)
    );
    let stored = f
        .store
        .users
        .find_by_id(user.id, now())
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(stored.password_hash.as_deref(), Some("$argon2id$fake"));

    let stranger = session_for(UserId::new(), at, Duration::hours(1));
    assert!(matches!(
        f.store
            .sessions
            .set_password_and_restart("x", Replacing::Any, &stranger)
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn a_password_change_replaces_only_the_password_it_was_proven_with(backend: Backend) {
    let f = fixture(backend).await;
    let user = new_user();
    f.store.users.insert(&user).await.expect("insert");
    let at = now();
    let first = session_for(user.id, at, Duration::hours(1));
    f.store
        .sessions
        .set_password_and_restart("hash-1", Replacing::Exactly(None), &first)
        .await
        .expect("the first password");
    // A second "first password" lost the race: the account has one now.
    let late = session_for(user.id, at, Duration::hours(1));
    assert!(matches!(
        f.store
            .sessions
            .set_password_and_restart("hash-x", Replacing::Exactly(None), &late)
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        f.store.sessions.touch(late.id, at).await.expect("touch"),
        None,
        "the loser's session was never started"
    );
    assert_eq!(
        f.store.sessions.touch(first.id, at).await.expect("touch"),
        Some(user.id),
        "and nothing was revoked"
    );
    let second = session_for(user.id, at, Duration::hours(1));
    f.store
        .sessions
        .set_password_and_restart("hash-2", Replacing::Exactly(Some("hash-1")), &second)
        .await
        .expect("a change from the current password");
    let reset = session_for(user.id, at, Duration::hours(1));
    f.store
        .sessions
        .set_password_and_restart("hash-3", Replacing::Any, &reset)
        .await
        .expect("a reset replaces whatever is there");
    let stored = f
        .store
        .users
        .find_by_id(user.id, now())
        .await
        .expect("find");
    assert_eq!(
        stored.and_then(|u| u.password_hash).as_deref(),
        Some("hash-3")
    );
}

async fn usage_is_zero_without_a_row(backend: Backend) {
    let f = fixture(backend).await;
    let user = new_user();
    f.store.users.insert(&user).await.expect("insert");
    assert_eq!(
        f.store
            .usage
            .used_on(user.id, now().date_naive())
            .await
            .expect("usage"),
        0
    );
    let found = f
        .store
        .users
        .find_with_usage(user.id, now(), now().date_naive())
        .await
        .expect("find with usage")
        .expect("exists");
    assert_eq!((found.user.id, found.used_today), (user.id, 0));
    assert_eq!(found.pro_until, None, "no subscription");
    assert!(
        f.store
            .users
            .find_with_usage(UserId::new(), now(), now().date_naive())
            .await
            .expect("find with usage")
            .is_none()
    );
}

async fn processes_starting_together_both_come_up(backend: Backend) {
    let db = TestDb::create(backend).await;
    let starts = (0..3).map(|_| Store::connect(&db.url, true));
    for started in futures::future::join_all(starts).await {
        let store = started.expect("every concurrent start migrates or waits");
        store.health.ping().await.expect("usable");
    }
}
