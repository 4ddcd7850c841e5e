//! Real SMS through Twilio (against a fake Twilio over HTTP that checks the exact request), its
//! failures, and the limits against SMS-pumping fraud: allowed regions and a per-region daily
//! ceiling.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::fakes::{FakeTwilio, TWILIO_FROM};
use crate::harness::{Backend, TestApp, TestResponse, postgres_url, random_mobile, redis_url};

backend_tests!(
    a_code_goes_out_as_twilio_expects_and_signs_in,
    a_messaging_service_can_send_instead_of_a_number,
    a_refused_sms_leaves_no_usable_code_and_spends_no_cooldown,
    a_slow_twilio_times_out_as_sms_unavailable,
    numbers_of_other_regions_are_refused_before_any_sms,
    a_region_has_a_daily_ceiling_of_codes,
);

/// A US number (each test has a database of its own, so fixed numbers do not collide).
fn us_mobile(n: u8) -> String {
    format!("+1650253000{n}")
}

/// A British mobile number.
fn uk_mobile(n: u8) -> String {
    format!("+44740012345{n}")
}

async fn twilio_app(backend: Backend, twilio: &FakeTwilio) -> TestApp {
    TestApp::spawn_with(backend, |config| twilio.configure(config)).await
}

async fn send_otp(app: &TestApp, mobile: &str) -> TestResponse {
    app.post("/auth/send-otp", None, json!({"mobile_number": mobile}))
        .await
}

async fn verify(app: &TestApp, mobile: &str, code: &str) -> TestResponse {
    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": code}),
    )
    .await
}

async fn a_code_goes_out_as_twilio_expects_and_signs_in(backend: Backend) {
    let twilio = FakeTwilio::start().await;
    twilio.accept().await;
    let app = twilio_app(backend, &twilio).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;

    let issued = send_otp(&app, &mobile).await;
    let body = issued.assert_status(200);
    assert_eq!(body["delivery"], "sms");
    assert_eq!(body["expires_in"], 300);
    assert!(
        body.get("otp").is_none(),
        "the code never leaves by the API: {body}"
    );

    let sends = twilio.sends().await;
    assert_eq!(sends.len(), 1);
    let mut fields: Vec<&str> = sends[0].keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["Body", "From", "To"]);
    assert_eq!(sends[0]["To"], mobile);
    assert_eq!(sends[0]["From"], TWILIO_FROM);
    let code = twilio.code_sent(0).await;
    assert!(sends[0]["Body"].contains(&code));

    verify(&app, &mobile, &code).await.assert_status(200);
    // A reset code goes out the same way, and serves only the reset.
    app.clock.advance(chrono::Duration::seconds(31));
    app.post(
        "/auth/forgot-password",
        None,
        json!({"mobile_number": mobile}),
    )
    .await
    .assert_status(200);
    let reset = twilio.code_sent(1).await;
    app.post(
        "/auth/reset-password",
        None,
        json!({"mobile_number": mobile, "otp": reset, "new_password": "a fresh password"}),
    )
    .await
    .assert_status(200);
}

async fn a_messaging_service_can_send_instead_of_a_number(backend: Backend) {
    let twilio = FakeTwilio::start().await;
    twilio.accept().await;
    let app = TestApp::spawn_with(backend, |config| {
        twilio.configure(config);
        config.twilio_from = None;
        config.twilio_messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef".into());
    })
    .await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    send_otp(&app, &mobile).await.assert_status(200);
    let sends = twilio.sends().await;
    assert_eq!(
        sends[0].get("MessagingServiceSid").map(String::as_str),
        Some("MG0123456789abcdef0123456789abcdef")
    );
    assert!(!sends[0].contains_key("From"));
}

/// After a failed send: the code Twilio was asked to deliver does not sign in, and a new send
/// goes through at once (the cooldown was not spent).
async fn assert_nothing_spent(app: &TestApp, twilio: &FakeTwilio, mobile: &str) {
    let failed_code = twilio.code_sent(0).await;
    verify(app, mobile, &failed_code)
        .await
        .assert_problem(401, "invalid_otp");
    twilio.server.reset().await;
    twilio.accept().await;
    send_otp(app, mobile).await.assert_status(200);
    let code = twilio.code_sent(0).await;
    verify(app, mobile, &code).await.assert_status(200);
}

async fn a_refused_sms_leaves_no_usable_code_and_spends_no_cooldown(backend: Backend) {
    // (Twilio's status, its error code, what the client gets)
    let cases: [(u16, u32, u16, &str); 4] = [
        (400, 21211, 422, "invalid_mobile_number"),
        (401, 20003, 502, "sms_unavailable"),
        (429, 20429, 502, "sms_unavailable"),
        (500, 20500, 502, "sms_unavailable"),
    ];
    for (status, code, expected_status, expected_code) in cases {
        let twilio = FakeTwilio::start().await;
        twilio.refuse(status, code, "refused by the fake").await;
        let app = twilio_app(backend, &twilio).await;
        let mobile = random_mobile();
        app.signup(&mobile, None).await;
        let refused = send_otp(&app, &mobile).await;
        refused.assert_problem(expected_status, expected_code);
        let text = String::from_utf8_lossy(&refused.bytes).into_owned();
        assert!(
            !text.contains(crate::fakes::TWILIO_TOKEN),
            "no secret in {text}"
        );
        assert!(
            !text.contains("refused by the fake"),
            "Twilio's words stay inside: {text}"
        );
        assert_eq!(twilio.sends().await.len(), 1, "one try, no retry storm");
        assert_nothing_spent(&app, &twilio, &mobile).await;
    }
}

async fn a_slow_twilio_times_out_as_sms_unavailable(backend: Backend) {
    let twilio = FakeTwilio::start().await;
    FakeTwilio::send_call()
        .respond_with(
            wiremock::ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SM1", "status": "queued"}))
                .set_delay(std::time::Duration::from_secs(5)),
        )
        .mount(&twilio.server)
        .await;
    let app = TestApp::spawn_with(backend, |config| {
        twilio.configure(config);
        config.twilio_timeout_ms = 300;
    })
    .await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    send_otp(&app, &mobile)
        .await
        .assert_problem(502, "sms_unavailable");
    assert_nothing_spent(&app, &twilio, &mobile).await;
}

async fn numbers_of_other_regions_are_refused_before_any_sms(backend: Backend) {
    let twilio = FakeTwilio::start().await;
    twilio.accept().await;
    let open = TestApp::spawn(backend).await;
    let abroad = us_mobile(0);
    open.signup(&abroad, None).await;
    let app = open
        .sibling(|config| {
            twilio.configure(config);
            config.otp_allowed_regions = Some("in, GB".into());
        })
        .await;

    for route in ["send-otp", "forgot-password"] {
        app.post(
            &format!("/auth/{route}"),
            None,
            json!({"mobile_number": abroad}),
        )
        .await
        .assert_problem(422, "region_not_allowed");
    }
    app.post("/auth/signup", None, json!({"mobile_number": us_mobile(1)}))
        .await
        .assert_problem(422, "region_not_allowed");
    assert!(
        twilio.sends().await.is_empty(),
        "no SMS to a refused region"
    );

    // Numbers of the listed regions, written with or without their country code, are served.
    let home = random_mobile();
    app.signup(&home[3..], None).await;
    send_otp(&app, &home).await.assert_status(200);
    let british = uk_mobile(0);
    app.signup(&british, None).await;
    send_otp(&app, &british).await.assert_status(200);
    assert_eq!(twilio.sends().await.len(), 2);
}

async fn signed_up(app: &TestApp, mobile: &str) -> Value {
    app.signup(mobile, None).await
}

async fn a_region_has_a_daily_ceiling_of_codes(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.otp_region_daily_limit = Some(2);
    })
    .await;
    let indians = [random_mobile(), random_mobile(), random_mobile()];
    for mobile in &indians {
        signed_up(&app, mobile).await;
    }
    send_otp(&app, &indians[0]).await.assert_status(200);
    send_otp(&app, &indians[1]).await.assert_status(200);
    let refused = send_otp(&app, &indians[2]).await;
    refused.assert_problem(429, "otp_region_limit");
    let retry_after: i64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    // Another region has its own ceiling.
    let abroad = us_mobile(0);
    signed_up(&app, &abroad).await;
    send_otp(&app, &abroad).await.assert_status(200);
    // The next UTC day counts afresh.
    app.clock.advance(chrono::Duration::days(1));
    send_otp(&app, &indians[2]).await.assert_status(200);
}

/// Two processes sharing Redis share the ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_region_ceiling_is_shared_across_processes_through_redis() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    // Only this test counts codes per region in the shared Redis; clear its counter first so
    // an earlier run the same day does not count.
    let a = TestApp::spawn_with(Backend::Postgres, |config| {
        config.redis_url = Some(redis.clone());
        config.otp_region_daily_limit = Some(2);
    })
    .await;
    let day = a.clock_now().timestamp().div_euclid(86_400);
    let client = redis::Client::open(redis.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("DEL")
        .arg(format!("gemchat:rl:sms_region:GB:{day}"))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let b = a.sibling(|_| {}).await;
    let british: Vec<String> = (0..3).map(uk_mobile).collect();
    for mobile in &british {
        signed_up(&a, mobile).await;
    }
    send_otp(&a, &british[0]).await.assert_status(200);
    send_otp(&b, &british[1]).await.assert_status(200);
    send_otp(&a, &british[2])
        .await
        .assert_problem(429, "otp_region_limit");
}
