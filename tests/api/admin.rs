//! Administration (issue 16): the role granted on the command line only, the `/admin/*` routes
//! refused to everyone else, disabling and complimentary Pro taking effect at once (on every
//! process), statistics that match what happened, failed replies, and an audit log that
//! records each change exactly once.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::billing::{WEBHOOK_SECRET, deliver_signed, subscription_event};
use crate::fakes::{FakeGemini, GEMINI_KEY, api_error};
use crate::harness::{
    Backend, SseClient, TestApp, TestResponse, eventually, postgres_url, random_mobile, redis_url,
    token_of,
};

backend_tests!(
    the_role_is_granted_and_revoked_on_the_command_line_only,
    every_admin_route_refuses_other_callers,
    disabling_cuts_a_user_off_at_once_and_enabling_lets_them_sign_in_again,
    a_complimentary_pro_plan_lifts_the_limit_whatever_stripe_says,
    stats_count_what_happened,
    failed_replies_are_listed_with_their_codes_and_owners,
    the_audit_log_records_each_change_once_newest_first,
    users_are_found_by_number_or_name_a_page_at_a_time,
    bad_input_is_refused_and_changes_nothing,
    pro_and_basic_replies_come_from_their_plans_models,
    a_plan_that_lapses_mid_reply_keeps_the_model_it_started_with,
);

const PRO_MODEL: &str = "gemini-2.5-pro";

/// A streamed answer as Gemini sends it, without `modelVersion`.
fn unnamed_reply(text: &str) -> wiremock::ResponseTemplate {
    let event = json!({
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
    });
    wiremock::ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(format!("data: {event}\r\n\r\n"))
}

fn with_models(config: &mut gemchat::config::Config, uri: String) {
    config.ai_provider = Some(gemchat::config::AiProviderKind::Gemini);
    config.gemini_api_key = Some(gemchat::config::Secret::new(GEMINI_KEY));
    config.gemini_base_url = uri;
    config.pro_gemini_model = Some(PRO_MODEL.into());
}

async fn pro_and_basic_replies_come_from_their_plans_models(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(crate::fakes::sse_reply(&["basic answer"]))
        .mount(&gemini.server)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path(format!(
            "/v1beta/models/{PRO_MODEL}:streamGenerateContent"
        )))
        .and(wiremock::matchers::header("x-goog-api-key", GEMINI_KEY))
        .respond_with(unnamed_reply("pro answer"))
        .mount(&gemini.server)
        .await;
    let uri = gemini.uri();
    let app = TestApp::spawn_with(backend, move |config| with_models(config, uri)).await;
    let (admin, _) = app.new_admin().await;
    let (basic, _) = app.new_user().await;
    let (pro, pro_user) = app.new_user().await;
    patch_user(&app, &admin, &pro_user, json!({"pro_override": true}))
        .await
        .assert_status(200);
    let mut replies = Vec::new();
    for token in [&basic, &pro] {
        let room = app.chatroom(token, "which model?").await;
        app.send_message(token, &room, "hello").await;
        app.drain_jobs().await;
        let page = app.get(&format!("/chatroom/{room}"), Some(token)).await;
        replies.push(page.assert_status(200)["messages"][1].clone());
    }
    assert_eq!(replies[0]["content"], "basic answer");
    assert_eq!(
        replies[0]["model"], "gemini-2.5-flash-001",
        "Gemini's own name for it"
    );
    assert_eq!(replies[1]["content"], "pro answer");
    assert_eq!(
        replies[1]["model"], PRO_MODEL,
        "the model asked, when Gemini names none"
    );
    let paths: Vec<String> = gemini
        .server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            format!(
                "/v1beta/models/{}:streamGenerateContent",
                crate::fakes::GEMINI_MODEL
            ),
            format!("/v1beta/models/{PRO_MODEL}:streamGenerateContent"),
        ]
    );
}

async fn a_plan_that_lapses_mid_reply_keeps_the_model_it_started_with(backend: Backend) {
    let gemini = crate::gemini_stream::StreamingGemini::start().await;
    let uri = gemini.uri.clone();
    let app = TestApp::spawn_with(backend, move |config| with_models(config, uri)).await;
    let (admin, _) = app.new_admin().await;
    let (token, user) = app.new_user().await;
    patch_user(&app, &admin, &user, json!({"pro_override": true}))
        .await
        .assert_status(200);
    let room = app.chatroom(&token, "long answer").await;
    let sent = app.send_message(&token, &room, "tell me everything").await;
    let worker_app = std::sync::Arc::clone(&app.app);
    let worker = tokio::spawn(async move {
        gemchat::jobs::worker::run_next(&worker_app, &gemchat::job_handlers()).await
    });
    let call = gemini.next_call().await;
    assert_eq!(call.target, format!("{PRO_MODEL}:streamGenerateContent"));
    call.send("Part one, ").await;
    patch_user(&app, &admin, &user, json!({"pro_override": false}))
        .await
        .assert_status(200);
    call.send("part two.").await;
    call.finish().await;
    assert!(worker.await.expect("the worker").expect("a job ran"));
    let page = app.get(&format!("/chatroom/{room}"), Some(&token)).await;
    let reply = page.assert_status(200)["messages"][1].clone();
    assert_eq!(reply["id"], sent["reply"]["id"]);
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["content"], "Part one, part two.");
    assert_eq!(reply["model"], format!("{PRO_MODEL}-001"), "{reply}");
}

const ROUTES: [(&str, &str); 5] = [
    ("GET", "/admin/users"),
    ("PATCH", "/admin/users/0190a000-0000-7000-8000-000000000001"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/replies?status=failed"),
    ("GET", "/admin/audit"),
];

async fn call(
    app: &TestApp,
    verb: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> TestResponse {
    let method = Method::from_bytes(verb.as_bytes()).expect("a method");
    app.request(method, path, token, body).await
}

async fn patch_user(app: &TestApp, admin: &str, user: &Value, body: Value) -> TestResponse {
    let path = format!("/admin/users/{}", user["id"].as_str().unwrap_or_default());
    call(app, "PATCH", &path, Some(admin), Some(body)).await
}

async fn audit(app: &TestApp, admin: &str) -> Vec<Value> {
    let page = app.get("/admin/audit", Some(admin)).await;
    page.assert_status(200)["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Runs `gemchat admin <verb> <mobile>` on the app's database (and Redis, if it has one).
async fn admin_command(app: &TestApp, verb: &str, mobile: &str) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gemchat"));
    command
        .args(["admin", verb, mobile])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.app.config().database_url)
        .env("LOG_FORMAT", "json");
    if let Some(redis) = &app.app.config().redis_url {
        command.env("REDIS_URL", redis);
    }
    command.output().await.expect("running gemchat admin")
}

async fn is_admin(app: &TestApp, token: &str) -> Value {
    app.get("/user/me", Some(token)).await.assert_status(200)["is_admin"].clone()
}

async fn the_role_is_granted_and_revoked_on_the_command_line_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, user) = app.new_user().await;
    let mobile = user["mobile_number"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.get("/admin/stats", Some(&token))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(is_admin(&app, &token).await, false);

    let unknown = admin_command(&app, "grant", "+91 99999 00000").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no account has the mobile number +919999900000")
    );
    let impossible = admin_command(&app, "grant", "12").await;
    assert_eq!(impossible.status.code(), Some(1));

    // Written as people write it: spaces, no country code (DEFAULT_REGION).
    let local = format!("{} {}", &mobile[3..8], &mobile[8..]);
    let granted = admin_command(&app, "grant", &local).await;
    assert_eq!(granted.status.code(), Some(0), "{granted:?}");
    assert_eq!(
        String::from_utf8_lossy(&granted.stdout).trim(),
        format!("{mobile} is now an admin")
    );
    app.get("/admin/stats", Some(&token))
        .await
        .assert_status(200);
    assert_eq!(is_admin(&app, &token).await, true);
    let again = admin_command(&app, "grant", &mobile).await;
    assert!(String::from_utf8_lossy(&again.stdout).contains("already"));

    let entries = audit(&app, &token).await;
    assert_eq!(
        entries.len(),
        1,
        "granting twice is one change: {entries:?}"
    );
    assert_eq!(entries[0]["action"], "admin.grant");
    assert_eq!(entries[0]["admin_id"], Value::Null, "the command line");
    assert_eq!(entries[0]["target"], user["id"]);

    let revoked = admin_command(&app, "revoke", &mobile).await;
    assert_eq!(revoked.status.code(), Some(0));
    app.get("/admin/stats", Some(&token))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(is_admin(&app, &token).await, false);
    // No route grants the role: there is none under /admin that takes it.
    let doc = app.get("/openapi.json", None).await;
    let doc = doc.assert_status(200);
    let text = doc["paths"].to_string();
    assert!(!text.contains("is_admin"), "no route exposes the role");
    let security = &doc["paths"]["/admin/stats"]["get"]["security"];
    assert_eq!(security, &json!([{"admin": []}]));
    assert!(doc["components"]["securitySchemes"]["admin"].is_object());
}

async fn every_admin_route_refuses_other_callers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    for (verb, path) in ROUTES {
        let body = (verb == "PATCH").then(|| json!({"disabled": true}));
        call(&app, verb, path, Some(&token), body.clone())
            .await
            .assert_problem(403, "forbidden");
        let anonymous = call(&app, verb, path, None, body).await;
        anonymous.assert_problem(401, "unauthorized");
        assert!(anonymous.header("www-authenticate").is_some());
    }
}

async fn disabling_cuts_a_user_off_at_once_and_enabling_lets_them_sign_in_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (admin, _) = app.new_admin().await;
    let mobile = random_mobile();
    let user = app.signup(&mobile, Some("a password")).await;
    let login = json!({"mobile_number": mobile, "password": "a password"});
    let token = token_of(&app.post("/auth/login", None, login.clone()).await);
    let room = app.chatroom(&token, "listening").await;
    let (addr, _server) = app.serve_tcp().await;
    let mut stream = SseClient::connect(addr, &room, &token, None).await;
    app.get("/user/me", Some(&token)).await.assert_status(200);

    let disabled = patch_user(&app, &admin, &user, json!({"disabled": true})).await;
    let disabled = disabled.assert_status(200);
    assert_eq!(disabled["disabled"], true);
    assert_eq!(disabled["id"], user["id"]);
    app.get("/user/me", Some(&token))
        .await
        .assert_problem(401, "unauthorized");
    assert!(
        stream.ends_within(Duration::from_secs(10)).await,
        "the open stream ends"
    );
    app.post("/auth/login", None, login.clone())
        .await
        .assert_problem(403, "account_disabled");
    app.post("/auth/send-otp", None, json!({"mobile_number": mobile}))
        .await
        .assert_problem(403, "account_disabled");
    // A wrong password learns nothing.
    app.post(
        "/auth/login",
        None,
        json!({"mobile_number": mobile, "password": "not it!!"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");

    let enabled = patch_user(&app, &admin, &user, json!({"disabled": false})).await;
    assert_eq!(enabled.assert_status(200)["disabled"], false);
    app.get("/user/me", Some(&token))
        .await
        .assert_problem(401, "unauthorized");
    let fresh = token_of(&app.post("/auth/login", None, login).await);
    app.get("/user/me", Some(&fresh)).await.assert_status(200);
}

/// A disabled user is cut off on every process at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_reaches_every_process_through_redis() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Postgres, |c| c.redis_url = Some(redis.clone())).await;
    let b = a.sibling(|c| c.redis_url = Some(redis.clone())).await;
    let (admin, _) = a.new_admin().await;
    let (token, user) = a.new_user().await;
    let room = a.chatroom(&token, "on b").await;
    let (addr, _server) = b.serve_tcp().await;
    let mut stream = SseClient::connect(addr, &room, &token, None).await;
    b.get("/user/me", Some(&token)).await.assert_status(200);
    patch_user(&a, &admin, &user, json!({"disabled": true}))
        .await
        .assert_status(200);
    eventually(
        Duration::from_secs(10),
        "B refuses the disabled user",
        || async { b.get("/user/me", Some(&token)).await.status.as_u16() == 401 },
    )
    .await;
    assert!(
        stream.ends_within(Duration::from_secs(10)).await,
        "B's stream ends"
    );
}

async fn a_complimentary_pro_plan_lifts_the_limit_whatever_stripe_says(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.basic_daily_limit = 1;
        config.stripe_webhook_secret = Some(gemchat::config::Secret::new(WEBHOOK_SECRET));
    })
    .await;
    let (admin, _) = app.new_admin().await;
    let (token, user) = app.new_user().await;
    let room = app.chatroom(&token, "busy").await;
    app.send_message(&token, &room, "one").await;
    let refused = app
        .post(
            &format!("/chatroom/{room}/message"),
            Some(&token),
            json!({"content": "two"}),
        )
        .await;
    refused.assert_problem(429, "daily_limit_reached");

    let comped = patch_user(&app, &admin, &user, json!({"pro_override": true})).await;
    let comped = comped.assert_status(200);
    assert_eq!(
        (comped["pro_override"].clone(), comped["tier"].clone()),
        (json!(true), json!("pro"))
    );
    assert_eq!(comped["usage"]["daily_limit"], Value::Null);
    app.send_message(&token, &room, "two").await;
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["tier"], "pro");

    // Stripe says the (unrelated) subscription ended: the complimentary plan stays.
    let ended = app.clock_now().timestamp();
    deliver_signed(
        &app,
        &subscription_event(
            "evt_x",
            "customer.subscription.deleted",
            100,
            Some(&user),
            "canceled",
            ended,
        ),
    )
    .await;
    app.send_message(&token, &room, "three").await;
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["tier"], "pro");

    patch_user(&app, &admin, &user, json!({"pro_override": false}))
        .await
        .assert_status(200);
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["tier"], "basic");
    app.post(
        &format!("/chatroom/{room}/message"),
        Some(&token),
        json!({"content": "four"}),
    )
    .await
    .assert_problem(429, "daily_limit_reached");
}

async fn stats_count_what_happened(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (admin, _) = app.new_admin().await;
    let (alice, alice_user) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    app.new_user().await; // signed up, never prompted
    let room = app.chatroom(&alice, "a").await;
    app.send_message(&alice, &room, "hello").await;
    app.send_message(&alice, &room, "again").await;
    app.drain_jobs().await;
    let bobs = app.chatroom(&bob, "b").await;
    app.send_message(&bob, &bobs, "queued").await; // its reply stays pending
    patch_user(&app, &admin, &alice_user, json!({"pro_override": true}))
        .await
        .assert_status(200);

    let stats = app.get("/admin/stats", Some(&admin)).await;
    let stats = stats.assert_status(200);
    assert_eq!(
        stats["users"],
        json!({"total": 4, "pro": 1, "active_today": 2})
    );
    assert_eq!(stats["prompts_today"], 3);
    let tokens = &stats["tokens_today"];
    assert!(tokens["input"].as_u64().is_some_and(|n| n > 0), "{stats}");
    assert!(tokens["output"].as_u64().is_some_and(|n| n > 0), "{stats}");
    assert_eq!(tokens["thinking"], 0);
    assert_eq!(
        stats["replies"],
        json!({"pending": 1, "streaming": 0, "failed_24h": 0})
    );
    assert_eq!(stats["queue"]["depth"], 1, "Bob's reply job: {stats}");

    // The figures are Alice's two replies' tokens exactly.
    let usage = app.get("/user/me/usage?days=1", Some(&alice)).await;
    let day = &usage.assert_status(200)["days"][0];
    assert_eq!(tokens["input"], day["input_tokens"]);
    assert_eq!(tokens["output"], day["output_tokens"]);

    app.clock.advance(chrono::Duration::seconds(90));
    let later = app.get("/admin/stats", Some(&admin)).await;
    let age = later.assert_status(200)["queue"]["oldest_age_seconds"].as_u64();
    assert!(age.is_some_and(|s| s >= 90), "{age:?}");
    app.drain_jobs().await;
    let drained = app.get("/admin/stats", Some(&admin)).await;
    let drained = drained.assert_status(200);
    assert_eq!(
        drained["queue"],
        json!({"depth": 0, "oldest_age_seconds": 0})
    );
    assert_eq!(drained["replies"]["pending"], 0);
}

async fn failed_replies_are_listed_with_their_codes_and_owners(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(api_error(400, "INVALID_ARGUMENT", "bad request", json!([])))
        .mount(&gemini.server)
        .await;
    let uri = gemini.uri();
    let app = TestApp::spawn_with(backend, move |config| {
        config.ai_provider = Some(gemchat::config::AiProviderKind::Gemini);
        config.gemini_api_key = Some(gemchat::config::Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
    })
    .await;
    let (admin, _) = app.new_admin().await;
    let (token, user) = app.new_user().await;
    let room = app.chatroom(&token, "fails").await;
    let sent = app.send_message(&token, &room, "this fails").await;
    app.send_message(&token, &room, "this fails too").await;
    app.drain_jobs().await;

    let page = app
        .get("/admin/replies?status=failed&limit=10", Some(&admin))
        .await;
    let replies = page.assert_status(200)["replies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(replies.len(), 2);
    assert_ne!(replies[0]["id"], sent["reply"]["id"], "newest first");
    assert_eq!(replies[1]["id"], sent["reply"]["id"]);
    for reply in &replies {
        assert_eq!(reply["status"], "failed");
        assert_eq!(reply["user_id"], user["id"]);
        assert_eq!(reply["chatroom_id"], json!(room));
        assert_eq!(reply["error"]["code"], "ai_rejected");
    }
    let one = app.get("/admin/replies?limit=1", Some(&admin)).await;
    assert_eq!(
        one.assert_status(200)["replies"].as_array().map(Vec::len),
        Some(1)
    );
    let stats = app.get("/admin/stats", Some(&admin)).await;
    assert_eq!(stats.assert_status(200)["replies"]["failed_24h"], 2);
}

async fn the_audit_log_records_each_change_once_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (admin, admin_user) = app.new_admin().await;
    let (_, user) = app.new_user().await;
    patch_user(&app, &admin, &user, json!({"disabled": true}))
        .await
        .assert_status(200);
    patch_user(&app, &admin, &user, json!({"disabled": true}))
        .await
        .assert_status(200);
    patch_user(
        &app,
        &admin,
        &user,
        json!({"disabled": false, "pro_override": true}),
    )
    .await
    .assert_status(200);
    patch_user(&app, &admin, &user, json!({"pro_override": true}))
        .await
        .assert_status(200);

    let entries = audit(&app, &admin).await;
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    // Newest first; the grant (command line) is the oldest; repeats changed nothing.
    assert_eq!(
        actions,
        [
            "user.pro_override.on",
            "user.enable",
            "user.disable",
            "admin.grant"
        ]
    );
    for entry in &entries[..3] {
        assert_eq!(entry["admin_id"], admin_user["id"]);
        assert_eq!(entry["target"], user["id"]);
        assert!(entry["at"].as_str().is_some());
    }
    let first = app.get("/admin/audit?limit=2", Some(&admin)).await;
    let first = first.assert_status(200);
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(2));
    let cursor = first["next_before"].as_str().expect("a next page");
    let second = app
        .get(
            &format!("/admin/audit?limit=2&before={cursor}"),
            Some(&admin),
        )
        .await;
    let second = second.assert_status(200);
    let rest: Vec<&str> = second["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(rest, ["user.disable", "admin.grant"]);
}

async fn users_are_found_by_number_or_name_a_page_at_a_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (admin, _) = app.new_admin().await;
    let mobile = random_mobile();
    app.post(
        "/auth/signup",
        None,
        json!({"mobile_number": mobile, "name": "Zoë Fernandes"}),
    )
    .await
    .assert_status(201);
    for _ in 0..3 {
        app.new_user().await;
    }
    let by_name = app.get("/admin/users?q=FERNAND", Some(&admin)).await;
    let by_name = by_name.assert_status(200);
    assert_eq!(by_name["users"].as_array().map(Vec::len), Some(1));
    let found = &by_name["users"][0];
    assert_eq!(found["mobile_number"], json!(mobile));
    assert_eq!(found["disabled"], false);
    assert_eq!(found["usage"]["used_today"], 0);
    assert_eq!(found["last_seen_at"], Value::Null, "never signed in");
    let by_number = app
        .get(&format!("/admin/users?q={}", &mobile[5..]), Some(&admin))
        .await;
    assert_eq!(
        by_number.assert_status(200)["users"][0]["mobile_number"],
        json!(mobile)
    );
    let wildcard = app.get("/admin/users?q=%25", Some(&admin)).await;
    assert_eq!(
        wildcard.assert_status(200)["users"],
        json!([]),
        "% is taken literally"
    );

    // Five users, two a page, newest first, each once.
    let mut seen = Vec::new();
    let mut path = "/admin/users?limit=2".to_owned();
    loop {
        let page = app.get(&path, Some(&admin)).await;
        let page = page.assert_status(200).clone();
        seen.extend(page["users"].as_array().cloned().unwrap_or_default());
        match page["next_before"].as_str() {
            Some(next) => path = format!("/admin/users?limit=2&before={next}"),
            None => break,
        }
    }
    let ids: Vec<&str> = seen.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(ids.len(), 5);
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(sorted, ids);
    assert!(
        seen[4]["last_seen_at"].as_str().is_some(),
        "the admin signed in"
    );
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (admin, admin_user) = app.new_admin().await;
    let (_, user) = app.new_user().await;
    let unknown = json!({"id": uuid::Uuid::now_v7()});
    patch_user(&app, &admin, &unknown, json!({"disabled": true}))
        .await
        .assert_problem(404, "not_found");
    for body in [
        json!({}),
        json!({"disabled": true, "is_admin": true}),
        json!({"disabled": "yes"}),
    ] {
        patch_user(&app, &admin, &user, body)
            .await
            .assert_problem(422, "validation_failed");
    }
    patch_user(&app, &admin, &admin_user, json!({"disabled": true}))
        .await
        .assert_problem(422, "validation_failed");
    call(
        &app,
        "PATCH",
        "/admin/users/not-a-uuid",
        Some(&admin),
        Some(json!({"disabled": true})),
    )
    .await
    .assert_problem(400, "malformed_request");
    for path in [
        "/admin/users?limit=0",
        "/admin/users?limit=101",
        "/admin/users?role=admin",
        "/admin/users?before=abc",
        "/admin/users?before=6a0c5b1e-5d63-4c1f-9a0e-3b1f8e4f2c11",
        "/admin/audit?limit=1000",
        "/admin/audit?before=yesterday",
        "/admin/replies?status=pending",
        "/admin/replies?limit=-1",
    ] {
        let refused = app.get(path, Some(&admin)).await;
        refused.assert_problem(422, "validation_failed");
    }
    let entries = audit(&app, &admin).await;
    assert_eq!(entries.len(), 1, "only the grant: {entries:?}");
    let me = app.get("/admin/users", Some(&admin)).await;
    let me = me.assert_status(200);
    assert!(
        me["users"]
            .as_array()
            .is_some_and(|u| u.iter().all(|u| u["disabled"] == false))
    );
}

/// With Redis, `gemchat admin` moves the user's cache version: every serving process shows the
/// new role on `GET /user/me` at once, though each had the profile in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_set_on_the_command_line_shows_at_once_on_every_process_with_redis() {
    let Some(redis) = crate::harness::redis_url() else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(redis)).await;
    let b = a.sibling(|_| {}).await;
    let (token, user) = a.new_user().await;
    let mobile = user["mobile_number"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for app in [&a, &a, &b, &b] {
        assert_eq!(is_admin(app, &token).await, false);
    }
    let granted = admin_command(&a, "grant", &mobile).await;
    assert_eq!(granted.status.code(), Some(0), "{granted:?}");
    assert!(granted.stderr.is_empty(), "{granted:?}");
    for app in [&a, &b] {
        assert_eq!(is_admin(app, &token).await, true);
    }
    admin_command(&a, "revoke", &mobile).await;
    for app in [&b, &a] {
        assert_eq!(is_admin(app, &token).await, false);
    }
}
