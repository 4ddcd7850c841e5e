//! Sign-up, one-time codes and passwords, as clients meet them.

use axum::http::Method;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp, random_mobile, token_of};

backend_tests!(
    signup_creates_a_basic_user_with_a_normalised_number,
    duplicate_signup_is_409_even_when_written_differently,
    impossible_numbers_are_422_invalid_mobile_number,
    signup_validates_name_and_password,
    codes_for_unknown_numbers_are_404,
    a_code_signs_in_once,
    the_fifth_wrong_code_kills_the_code,
    a_second_code_within_30_seconds_is_429_with_retry_after,
    the_eleventh_code_in_an_hour_is_refused,
    an_expired_code_is_invalid,
    a_new_code_replaces_the_old_one,
    reset_codes_and_login_codes_are_not_interchangeable,
    password_login_checks_the_password,
    change_password_needs_the_current_one_and_revokes_older_tokens,
    an_otp_only_account_sets_its_first_password_without_a_current_one,
    reset_password_sets_a_new_password_and_revokes_older_tokens,
    codes_are_not_returned_with_log_delivery,
    otp_input_is_validated,
);

async fn signup_creates_a_basic_user_with_a_normalised_number(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .post(
            "/auth/signup",
            None,
            json!({"mobile_number": "98765 43210", "name": "  Asha  ", "password": "hunter2hunter2"}),
        )
        .await;
    let user = &response.assert_status(201)["user"];
    assert_eq!(user["mobile_number"], "+919876543210");
    assert_eq!(user["name"], "Asha");
    assert_eq!(user["tier"], "basic");
    assert_eq!(user["has_password"], true);
    assert!(
        user["id"]
            .as_str()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
    );
    assert!(
        user["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(user.get("password_hash").is_none());
    assert!(!response.text.contains("argon2"));

    let bare = app
        .post(
            "/auth/signup",
            None,
            json!({"mobile_number": "+14155552671"}),
        )
        .await;
    let user = &bare.assert_status(201)["user"];
    assert_eq!(user["name"], serde_json::Value::Null);
    assert_eq!(user["has_password"], false);
}

async fn duplicate_signup_is_409_even_when_written_differently(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("+919876543210", None).await;
    app.post(
        "/auth/signup",
        None,
        json!({"mobile_number": "(98765) 43-210"}),
    )
    .await
    .assert_problem(409, "mobile_number_taken");
}

async fn impossible_numbers_are_422_invalid_mobile_number(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for number in ["12345", "+999 1234", "not a number", ""] {
        let response = app
            .post("/auth/signup", None, json!({"mobile_number": number}))
            .await;
        response.assert_problem(422, "invalid_mobile_number");
        assert_eq!(response.body["errors"][0]["field"], "mobile_number");
        app.post("/auth/send-otp", None, json!({"mobile_number": number}))
            .await
            .assert_problem(422, "invalid_mobile_number");
    }
}

async fn signup_validates_name_and_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    let short = app
        .post(
            "/auth/signup",
            None,
            json!({"mobile_number": mobile, "password": "short"}),
        )
        .await;
    short.assert_problem(422, "validation_failed");
    assert_eq!(short.body["errors"][0]["field"], "password");
    let long_name = app
        .post(
            "/auth/signup",
            None,
            json!({"mobile_number": mobile, "name": "x".repeat(101)}),
        )
        .await;
    long_name.assert_problem(422, "validation_failed");
    assert_eq!(long_name.body["errors"][0]["field"], "name");
    let missing = app.post("/auth/signup", None, json!({"name": "A"})).await;
    missing.assert_problem(422, "validation_failed");
    assert_eq!(missing.body["errors"][0]["field"], "mobile_number");
    // Nothing was created by the refused requests.
    app.signup(&mobile, None).await;
}

async fn codes_for_unknown_numbers_are_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for route in ["/auth/send-otp", "/auth/forgot-password"] {
        app.post(route, None, json!({"mobile_number": random_mobile()}))
            .await
            .assert_problem(404, "user_not_found");
    }
}

async fn a_code_signs_in_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    let user = app.signup(&mobile, None).await;
    let issued = app
        .post("/auth/send-otp", None, json!({"mobile_number": mobile}))
        .await;
    let body = issued.assert_status(200);
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["delivery"], "response");
    let code = body["otp"].as_str().unwrap_or_default().to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));

    let session = app
        .post(
            "/auth/verify-otp",
            None,
            json!({"mobile_number": mobile, "otp": code}),
        )
        .await;
    let body = session.assert_status(200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86400);
    assert_eq!(body["user"]["id"], user["id"]);
    let token = token_of(&session);
    app.get("/user/me", Some(&token)).await.assert_status(200);

    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": code}),
    )
    .await
    .assert_problem(401, "invalid_otp");
}

async fn the_fifth_wrong_code_kills_the_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    let code = app.request_code("send-otp", &mobile).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        app.post(
            "/auth/verify-otp",
            None,
            json!({"mobile_number": mobile, "otp": wrong}),
        )
        .await
        .assert_problem(401, "invalid_otp");
    }
    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": wrong}),
    )
    .await
    .assert_problem(429, "otp_attempts_exceeded");
    // Dead: even the right code no longer works.
    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": code}),
    )
    .await
    .assert_problem(429, "otp_attempts_exceeded");
    // A new code works.
    app.after_cooldown();
    app.otp_login(&mobile).await;
}

async fn a_second_code_within_30_seconds_is_429_with_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    app.request_code("send-otp", &mobile).await;
    app.clock.advance(chrono::Duration::seconds(10));
    for route in ["/auth/send-otp", "/auth/forgot-password"] {
        let refused = app
            .post(route, None, json!({"mobile_number": mobile}))
            .await;
        refused.assert_problem(429, "otp_cooldown");
        assert_eq!(refused.header("retry-after"), Some("20"));
    }
    app.clock.advance(chrono::Duration::seconds(20));
    app.request_code("send-otp", &mobile).await;
}

async fn the_eleventh_code_in_an_hour_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    for _ in 0..10 {
        app.request_code("send-otp", &mobile).await;
        app.clock.advance(chrono::Duration::seconds(60));
    }
    let refused = app
        .post("/auth/send-otp", None, json!({"mobile_number": mobile}))
        .await;
    refused.assert_problem(429, "otp_rate_limited");
    // The first send (600 s ago) leaves the window in 3000 s.
    assert_eq!(refused.header("retry-after"), Some("3000"));
    app.clock.advance(chrono::Duration::seconds(3000));
    app.request_code("send-otp", &mobile).await;
}

async fn an_expired_code_is_invalid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    let code = app.request_code("send-otp", &mobile).await;
    app.clock.advance(chrono::Duration::seconds(300));
    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": code}),
    )
    .await
    .assert_problem(401, "invalid_otp");
}

async fn a_new_code_replaces_the_old_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    let first = app.request_code("send-otp", &mobile).await;
    app.after_cooldown();
    let second = app.request_code("send-otp", &mobile).await;
    if first != second {
        app.post(
            "/auth/verify-otp",
            None,
            json!({"mobile_number": mobile, "otp": first}),
        )
        .await
        .assert_problem(401, "invalid_otp");
    }
    let session = app
        .post(
            "/auth/verify-otp",
            None,
            json!({"mobile_number": mobile, "otp": second}),
        )
        .await;
    session.assert_status(200);
}

async fn reset_codes_and_login_codes_are_not_interchangeable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("first-password")).await;
    let reset_code = app.request_code("forgot-password", &mobile).await;
    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": reset_code}),
    )
    .await
    .assert_problem(401, "invalid_otp");
    app.after_cooldown();
    let login_code = app.request_code("send-otp", &mobile).await;
    app.post(
        "/auth/reset-password",
        None,
        json!({"mobile_number": mobile, "otp": login_code, "new_password": "second-password"}),
    )
    .await
    .assert_problem(401, "invalid_otp");
    // Each code still works for its own purpose.
    let reset = app
        .post(
            "/auth/reset-password",
            None,
            json!({"mobile_number": mobile, "otp": reset_code, "new_password": "second-password"}),
        )
        .await;
    reset.assert_status(200);
    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": login_code}),
    )
    .await
    .assert_status(200);
}

async fn password_login_checks_the_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("correct horse")).await;
    let session = app
        .post(
            "/auth/login",
            None,
            json!({"mobile_number": mobile, "password": "correct horse"}),
        )
        .await;
    let token = token_of(&session);
    let sessions = app.get("/auth/sessions", Some(&token)).await;
    assert_eq!(
        sessions.assert_status(200)["sessions"][0]["method"],
        "password"
    );

    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": mobile, "password": "wrong horse"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": random_mobile(), "password": "correct horse"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let otp_only = random_mobile();
    app.signup(&otp_only, None).await;
    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": otp_only, "password": "anything at all"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
}

async fn change_password_needs_the_current_one_and_revokes_older_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("old password")).await;
    let login = json!({"mobile_number": mobile, "password": "old password"});
    let first = token_of(&app.post("/auth/login", None, login.clone()).await);
    let second = token_of(&app.post("/auth/login", None, login).await);

    let missing = app
        .post(
            "/auth/change-password",
            Some(&first),
            json!({"new_password": "new password"}),
        )
        .await;
    missing.assert_problem(422, "validation_failed");
    assert_eq!(missing.body["errors"][0]["field"], "current_password");
    app.post(
        "/auth/change-password",
        Some(&first),
        json!({"current_password": "not it at all", "new_password": "new password"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    app.post(
        "/auth/change-password",
        Some(&first),
        json!({"current_password": "old password", "new_password": "short"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    // Refused attempts changed nothing.
    app.get("/user/me", Some(&second)).await.assert_status(200);

    let changed = app
        .post(
            "/auth/change-password",
            Some(&first),
            json!({"current_password": "old password", "new_password": "new password"}),
        )
        .await;
    let fresh = token_of(&changed);
    for old in [&first, &second] {
        app.get("/user/me", Some(old))
            .await
            .assert_problem(401, "unauthorized");
    }
    let sessions = app.get("/auth/sessions", Some(&fresh)).await;
    let sessions = sessions.assert_status(200)["sessions"].clone();
    assert_eq!(sessions.as_array().map(Vec::len), Some(1));
    assert_eq!(sessions[0]["method"], "password_change");
    assert_eq!(sessions[0]["current"], true);

    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": mobile, "password": "old password"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": mobile, "password": "new password"}),
    )
    .await
    .assert_status(200);
}

async fn an_otp_only_account_sets_its_first_password_without_a_current_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, user) = app.new_user().await;
    assert_eq!(user["has_password"], false);
    let changed = app
        .post(
            "/auth/change-password",
            Some(&token),
            json!({"new_password": "first password"}),
        )
        .await;
    assert_eq!(changed.assert_status(200)["user"]["has_password"], true);
    let mobile = user["mobile_number"].as_str().unwrap_or_default();
    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": mobile, "password": "first password"}),
    )
    .await
    .assert_status(200);
}

async fn reset_password_sets_a_new_password_and_revokes_older_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("forgotten one")).await;
    let old = token_of(
        &app.post(
            "/auth/login",
            None,
            json!({"mobile_number": mobile, "password": "forgotten one"}),
        )
        .await,
    );
    let code = app.request_code("forgot-password", &mobile).await;
    let reset_body =
        json!({"mobile_number": mobile, "otp": code, "new_password": "remembered one"});
    let reset = app
        .post("/auth/reset-password", None, reset_body.clone())
        .await;
    let fresh = token_of(&reset);
    app.get("/user/me", Some(&old))
        .await
        .assert_problem(401, "unauthorized");
    let sessions = app.get("/auth/sessions", Some(&fresh)).await;
    assert_eq!(
        sessions.assert_status(200)["sessions"][0]["method"],
        "reset"
    );
    // The reset code is single use.
    app.post("/auth/reset-password", None, reset_body)
        .await
        .assert_problem(401, "invalid_otp");
    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": mobile, "password": "remembered one"}),
    )
    .await
    .assert_status(200);
}

async fn codes_are_not_returned_with_log_delivery(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.otp_delivery = gemchat::config::OtpDelivery::Log;
    })
    .await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    let issued = app
        .post("/auth/send-otp", None, json!({"mobile_number": mobile}))
        .await;
    let body = issued.assert_status(200);
    assert_eq!(body["delivery"], "log");
    assert!(body.get("otp").is_none());
}

async fn otp_input_is_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    for otp in ["12345", "abcdef", "1234567"] {
        app.post(
            "/auth/verify-otp",
            None,
            json!({"mobile_number": mobile, "otp": otp}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    // No code was ever sent.
    app.post(
        "/auth/verify-otp",
        None,
        json!({"mobile_number": mobile, "otp": "123456"}),
    )
    .await
    .assert_problem(401, "invalid_otp");
    app.request(Method::POST, "/auth/verify-otp", None, None)
        .await
        .assert_problem(400, "malformed_request");
}
