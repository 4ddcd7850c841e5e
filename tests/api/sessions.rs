//! Tokens and sessions: what is refused, what revokes, and the session list.

use axum::body::Body;
use axum::http::{Method, Request, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{
    Backend, JWT_SECRET, TestApp, eventually, postgres_url, random_mobile, redis_url, token_of,
};

backend_tests!(
    bad_tokens_are_401_with_www_authenticate,
    logout_revokes_the_token_it_was_called_with,
    sessions_are_listed_newest_first_with_the_current_one_marked,
    deleting_a_session_revokes_it_and_only_its_owner_may,
    an_active_session_is_rechecked_in_the_background,
);

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

async fn bad_tokens_are_401_with_www_authenticate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let (other_token, _) = app.new_user().await;
    app.get("/user/me", Some(&token)).await.assert_status(200);
    let claims = claims_of(&token);
    assert!(claims["jti"].is_string() && claims["iat"].is_i64() && claims["exp"].is_i64());

    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = claims_of(&other_token)["sub"].clone();
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        parts[2]
    );
    let forged = sign(&claims, b"a different secret of the same length!!!!!!");
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let mut expired_claims = claims.clone();
    let now = chrono::Utc::now().timestamp();
    expired_claims["iat"] = json!(now - 7200);
    expired_claims["exp"] = json!(now - 60);
    let expired = sign(&expired_claims, JWT_SECRET.as_bytes());
    // Well signed, but it names another user than the session's owner.
    let mismatched = sign(&tampered_claims, JWT_SECRET.as_bytes());
    let mut unknown_claims = claims.clone();
    unknown_claims["jti"] = json!(uuid::Uuid::now_v7());
    let unknown_session = sign(&unknown_claims, JWT_SECRET.as_bytes());

    for bad in [
        tampered.as_str(),
        &forged,
        &alg_none,
        &expired,
        &mismatched,
        &unknown_session,
        "not.a.jwt",
        "garbage",
    ] {
        let response = app.get("/user/me", Some(bad)).await;
        response.assert_problem(401, "unauthorized");
        assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{bad}");
    }
    app.get("/user/me", None)
        .await
        .assert_problem(401, "unauthorized");
    for header_value in [format!("Basic {token}"), token.clone(), "Bearer".into()] {
        let request = Request::builder()
            .uri("/user/me")
            .header(header::AUTHORIZATION, header_value)
            .body(Body::empty())
            .unwrap_or_default();
        app.send(request).await.assert_problem(401, "unauthorized");
    }
    // The genuine token still works.
    app.get("/user/me", Some(&token)).await.assert_status(200);
}

async fn logout_revokes_the_token_it_was_called_with(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("a password")).await;
    let login = json!({"mobile_number": mobile, "password": "a password"});
    let kept = token_of(&app.post("/auth/login", None, login.clone()).await);
    let token = token_of(&app.post("/auth/login", None, login).await);
    // Warm the cache, so revocation must invalidate it.
    app.get("/user/me", Some(&token)).await.assert_status(200);
    let out = app
        .request(Method::POST, "/auth/logout", Some(&token), None)
        .await;
    assert_eq!(out.status.as_u16(), 204);
    app.get("/user/me", Some(&token))
        .await
        .assert_problem(401, "unauthorized");
    app.request(Method::POST, "/auth/logout", Some(&token), None)
        .await
        .assert_problem(401, "unauthorized");
    app.get("/user/me", Some(&kept)).await.assert_status(200);
}

async fn sessions_are_listed_newest_first_with_the_current_one_marked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("a password")).await;
    let by_otp = app.otp_login(&mobile).await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "gemchat-test/1.0")
        .body(Body::from(
            json!({"mobile_number": mobile, "password": "a password"}).to_string(),
        ))
        .unwrap_or_default();
    let by_password = token_of(&app.send(request).await);

    let listed = app.get("/auth/sessions", Some(&by_otp)).await;
    let sessions = listed.assert_status(200)["sessions"].clone();
    assert_eq!(sessions.as_array().map(Vec::len), Some(2));
    assert_eq!(sessions[0]["id"], claims_of(&by_password)["jti"]);
    assert_eq!(sessions[0]["method"], "password");
    assert_eq!(sessions[0]["user_agent"], "gemchat-test/1.0");
    assert_eq!(sessions[0]["current"], false);
    assert_eq!(sessions[1]["method"], "otp");
    assert_eq!(sessions[1]["current"], true);
    for session in sessions.as_array().into_iter().flatten() {
        for field in ["created_at", "expires_at", "last_used_at"] {
            assert!(session[field].is_string(), "{field}");
        }
    }
}

async fn deleting_a_session_revokes_it_and_only_its_owner_may(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (mine, _) = app.new_user().await;
    let (theirs, _) = app.new_user().await;
    let their_session = claims_of(&theirs)["jti"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let delete = |token: String, id: String| {
        let app = &app;
        async move {
            app.request(
                Method::DELETE,
                &format!("/auth/sessions/{id}"),
                Some(&token),
                None,
            )
            .await
        }
    };
    delete(mine.clone(), their_session.clone())
        .await
        .assert_problem(404, "not_found");
    app.get("/user/me", Some(&theirs)).await.assert_status(200);
    delete(mine.clone(), "not-a-uuid".into())
        .await
        .assert_problem(400, "malformed_request");
    delete(mine.clone(), uuid::Uuid::now_v7().to_string())
        .await
        .assert_problem(404, "not_found");

    let deleted = delete(theirs.clone(), their_session.clone()).await;
    assert_eq!(deleted.status.as_u16(), 204);
    app.get("/user/me", Some(&theirs))
        .await
        .assert_problem(401, "unauthorized");
    app.get("/user/me", Some(&mine)).await.assert_status(200);
}

/// Two processes on one PostgreSQL and Redis: a token revoked on one is refused by the other
/// long before its cached state would expire (60 s), because the revocation travels on the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_process_through_redis() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Postgres, |c| c.redis_url = Some(redis.clone())).await;
    let b = a.sibling(|c| c.redis_url = Some(redis.clone())).await;
    let within = std::time::Duration::from_secs(10);

    let mobile = random_mobile();
    a.signup(&mobile, Some("a password")).await;
    let login = json!({"mobile_number": mobile, "password": "a password"});
    let first = token_of(&a.post("/auth/login", None, login.clone()).await);
    let second = token_of(&a.post("/auth/login", None, login).await);
    // Process B has both sessions cached as live.
    b.get("/user/me", Some(&first)).await.assert_status(200);
    b.get("/user/me", Some(&second)).await.assert_status(200);

    let out = a
        .request(Method::POST, "/auth/logout", Some(&first), None)
        .await;
    assert_eq!(out.status.as_u16(), 204);
    eventually(within, "B refuses the logged-out token", || async {
        b.get("/user/me", Some(&first)).await.status.as_u16() == 401
    })
    .await;
    b.get("/user/me", Some(&second)).await.assert_status(200);

    let changed = a
        .post(
            "/auth/change-password",
            Some(&second),
            json!({"current_password": "a password", "new_password": "another one"}),
        )
        .await;
    let fresh = token_of(&changed);
    eventually(
        within,
        "B refuses tokens older than the password change",
        || async { b.get("/user/me", Some(&second)).await.status.as_u16() == 401 },
    )
    .await;
    b.get("/user/me", Some(&fresh)).await.assert_status(200);
}

/// A session used again after half a minute is served from the cache at once and rechecked
/// behind the request (which records its use); a revocation still ends it at once.
async fn an_active_session_is_rechecked_in_the_background(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    app.get("/user/me", Some(&token)).await.assert_status(200);
    app.clock.advance(chrono::Duration::seconds(40));
    let used_at = app.clock_now();
    app.get("/user/me", Some(&token)).await.assert_status(200);
    eventually(
        std::time::Duration::from_secs(10),
        "the background recheck records the use",
        || async {
            let listed = app.get("/auth/sessions", Some(&token)).await;
            listed.body["sessions"][0]["last_used_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                == Some(used_at.into())
        },
    )
    .await;

    app.post("/auth/logout", Some(&token), json!({}))
        .await
        .assert_status(204);
    app.get("/user/me", Some(&token))
        .await
        .assert_problem(401, "unauthorized");
}
