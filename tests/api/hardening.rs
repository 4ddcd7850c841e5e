//! What an adversarial black-box run found, each pinned by a test at the HTTP level: NUL
//! characters, event streams outliving their token or room, unbounded metric labels, request
//! ids, malformed bodies, invisible names, refunds of deleted rooms, resumed streams, the docs'
//! 404s, trailing slashes, the search syntax and racing password changes.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, SseClient, TestApp, random_mobile, token_of};

backend_tests!(
    nul_characters_are_refused_in_every_text_field,
    event_streams_end_when_the_token_or_the_room_goes,
    event_streams_end_when_the_token_expires,
    unknown_methods_do_not_grow_the_metrics,
    unusable_request_ids_are_replaced,
    malformed_bodies_are_400,
    names_of_invisible_characters_are_empty,
    deleting_a_room_gives_back_the_prompts_of_replies_never_produced,
    a_resumed_stream_sends_only_what_the_client_has_not_seen,
    every_error_under_docs_is_problem_json,
    trailing_slashes_redirect_to_the_canonical_route,
    search_excludes_words_and_keeps_phrases_in_order,
    of_concurrent_password_changes_exactly_one_wins,
);

const WITHIN: Duration = Duration::from_secs(10);

async fn nul_characters_are_refused_in_every_text_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "nul").await;
    let sent = app
        .post(
            &format!("/chatroom/{room}/message"),
            Some(&token),
            json!({"content": "hi\u{0}there"}),
        )
        .await;
    sent.assert_problem(422, "validation_failed");
    assert_eq!(sent.body["errors"][0]["field"], "content");
    let search = app.get("/search?q=hi%00there", Some(&token)).await;
    search.assert_problem(422, "validation_failed");
    assert_eq!(search.body["errors"][0]["field"], "q");
    let renamed = app
        .request(
            Method::PATCH,
            &format!("/chatroom/{room}"),
            Some(&token),
            Some(json!({"name": "a\u{0}b"})),
        )
        .await;
    renamed.assert_problem(422, "validation_failed");
    assert_eq!(renamed.body["errors"][0]["field"], "name");
    let signup = app
        .post(
            "/auth/signup",
            None,
            json!({"mobile_number": random_mobile(), "password": "pass\u{0}word!"}),
        )
        .await;
    signup.assert_problem(422, "validation_failed");
    assert_eq!(signup.body["errors"][0]["field"], "password");
    // Nothing was stored.
    let history = app
        .get(&format!("/chatroom/{room}/messages"), Some(&token))
        .await;
    assert_eq!(history.assert_status(200)["messages"], json!([]));
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["usage"]["used_today"], 0);
}

async fn event_streams_end_when_the_token_or_the_room_goes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (addr, _server) = app.serve_tcp().await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("a password")).await;
    let login = || async {
        let body = json!({"mobile_number": mobile, "password": "a password"});
        token_of(&app.post("/auth/login", None, body).await)
    };

    // Logout.
    let token = login().await;
    let room = app.chatroom(&token, "listening").await;
    let mut stream = SseClient::connect(addr, &room, &token, None).await;
    let out = app
        .request(Method::POST, "/auth/logout", Some(&token), None)
        .await;
    assert_eq!(out.status.as_u16(), 204);
    assert!(stream.ends_within(WITHIN).await, "ends after logout");

    // A session revoked from another device.
    let (token, other) = (login().await, login().await);
    let mut stream = SseClient::connect(addr, &room, &token, None).await;
    let sessions = app.get("/auth/sessions", Some(&other)).await;
    let mine = sessions.assert_status(200)["sessions"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["current"] == false))
        .and_then(|s| s["id"].as_str().map(str::to_owned));
    let mine = mine.expect("the listening session is listed");
    let revoked = app
        .request(
            Method::DELETE,
            &format!("/auth/sessions/{mine}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(revoked.status.as_u16(), 204);
    assert!(stream.ends_within(WITHIN).await, "ends after a revoke");

    // A password change revokes every older token.
    let token = other;
    let mut stream = SseClient::connect(addr, &room, &token, None).await;
    let changed = app
        .post(
            "/auth/change-password",
            Some(&token),
            json!({"current_password": "a password", "new_password": "another password"}),
        )
        .await;
    let fresh = token_of(&changed);
    assert!(
        stream.ends_within(WITHIN).await,
        "ends after a password change"
    );

    // The room is deleted; a stream of another room stays open.
    let other_room = app.chatroom(&fresh, "staying").await;
    let mut stream = SseClient::connect(addr, &room, &fresh, None).await;
    let mut staying = SseClient::connect(addr, &other_room, &fresh, None).await;
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/chatroom/{room}"),
            Some(&fresh),
            None,
        )
        .await;
    assert_eq!(deleted.status.as_u16(), 204);
    assert!(stream.ends_within(WITHIN).await, "ends with its room");
    assert!(
        !staying.ends_within(Duration::from_secs(3)).await,
        "a live token's stream of a live room stays open"
    );
}

async fn event_streams_end_when_the_token_expires(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.jwt_ttl = 3).await;
    let (addr, _server) = app.serve_tcp().await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "short-lived").await;
    let mut stream = SseClient::connect(addr, &room, &token, None).await;
    assert!(
        stream.ends_within(WITHIN).await,
        "the stream ends once its token expired"
    );
    app.get("/user/me", Some(&token))
        .await
        .assert_problem(401, "unauthorized");
}

async fn unknown_methods_do_not_grow_the_metrics(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let long = "X".repeat(4000);
    for method in ["M12345", "M67890", long.as_str()] {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("a valid token"))
            .uri("/health")
            .body(Body::empty())
            .expect("request");
        let response = app.send(request).await;
        assert_eq!(response.status.as_u16(), 405);
    }
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status.as_u16(), 200);
    assert!(!metrics.text.contains("M12345") && !metrics.text.contains("XXXX"));
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("http_requests_total") && l.contains("method=\"other\"")),
        "invented methods share one label"
    );
}

async fn unusable_request_ids_are_replaced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let huge = "a".repeat(60_000);
    let with_id = |id: &str| {
        Request::builder()
            .uri("/health")
            .header("x-request-id", id)
            .body(Body::empty())
            .expect("request")
    };
    for bad in [
        huge.as_str(),
        "",
        "has space",
        "new\tline",
        &"b".repeat(129),
    ] {
        let response = app.send(with_id(bad)).await;
        let echoed = response.header("x-request-id").unwrap_or_default();
        assert_ne!(echoed, bad);
        assert!(
            uuid::Uuid::parse_str(echoed).is_ok(),
            "a generated id instead of {:.20}",
            bad
        );
    }
    for good in [
        "req-42",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "trace:abc_123.x",
    ] {
        let response = app.send(with_id(good)).await;
        assert_eq!(response.header("x-request-id"), Some(good));
    }
}

async fn malformed_bodies_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let raw = |path: &str, content_type: &str, body: Vec<u8>| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request")
    };
    let json = "application/json";
    for body in [
        br#"{"name": "ok"} trailing"#.to_vec(),
        br#"{"name": "ok"}{"name": "twice"}"#.to_vec(),
        b"{\"name\": \"\xff\xfe\"}".to_vec(),
    ] {
        let response = app.send(raw("/chatroom", json, body)).await;
        response.assert_problem(400, "malformed_request");
    }
    let plain = app
        .send(raw("/subscribe/pro", "text/plain", b"{}".to_vec()))
        .await;
    plain.assert_problem(400, "malformed_request");
    let listed = app.get("/chatroom", Some(&token)).await;
    assert_eq!(listed.assert_status(200)["chatrooms"], json!([]));
}

async fn names_of_invisible_characters_are_empty(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    for invisible in [
        "\u{200B}",
        "\u{FEFF}\u{FEFF}",
        "\u{180E}",
        " \u{200B} \u{2060}",
    ] {
        let room = app
            .post("/chatroom", Some(&token), json!({"name": invisible}))
            .await;
        room.assert_problem(422, "validation_failed");
        let me = app
            .request(
                Method::PATCH,
                "/user/me",
                Some(&token),
                Some(json!({"name": invisible})),
            )
            .await;
        me.assert_problem(422, "validation_failed");
        let signup = app
            .post(
                "/auth/signup",
                None,
                json!({"mobile_number": random_mobile(), "name": invisible}),
            )
            .await;
        signup.assert_problem(422, "validation_failed");
    }
    let trimmed = app
        .post(
            "/chatroom",
            Some(&token),
            json!({"name": "\u{200B}Trip\u{FEFF}"}),
        )
        .await;
    assert_eq!(trimmed.assert_status(201)["name"], "Trip");
}

async fn deleting_a_room_gives_back_the_prompts_of_replies_never_produced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let kept = app.chatroom(&token, "kept").await;
    app.send_message(&token, &kept, "answered").await;
    app.drain_jobs().await;
    let room = app.chatroom(&token, "doomed").await;
    app.send_message(&token, &room, "one").await;
    app.send_message(&token, &room, "two").await;
    let used = || async {
        let me = app.get("/user/me", Some(&token)).await;
        me.assert_status(200)["usage"]["used_today"].clone()
    };
    assert_eq!(used().await, 3);
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/chatroom/{room}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted.status.as_u16(), 204);
    assert_eq!(
        used().await,
        1,
        "the two queued prompts came back; the answered one counts"
    );
    assert_eq!(app.drain_jobs().await, 0, "their jobs are gone too");
}

async fn a_resumed_stream_sends_only_what_the_client_has_not_seen(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (addr, _server) = app.serve_tcp().await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "resume").await;
    let first = app.send_message(&token, &room, "first").await;
    app.drain_jobs().await;
    let first_reply = first["reply"]["id"].as_str().unwrap_or_default().to_owned();

    let mut stream =
        SseClient::connect(addr, &room, &token, Some(&format!("{first_reply}:end"))).await;
    let second = app.send_message(&token, &room, "second").await;
    app.drain_jobs().await;
    let events = stream.until("reply.completed").await;
    assert!(
        events.iter().all(|e| e.data["id"] != first["reply"]["id"]
            && e.data["message_id"] != first["reply"]["id"]),
        "nothing of the reply the client saw end: {events:?}"
    );
    assert_eq!(
        events.last().map(|e| e.data["id"].clone()),
        Some(second["reply"]["id"].clone())
    );
}

async fn every_error_under_docs_is_problem_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get("/docs/nope.js", None)
        .await
        .assert_problem(404, "not_found");
    app.get("/docs/a/b/c", None)
        .await
        .assert_problem(404, "not_found");
    app.get("/docs/", None).await.assert_status(200);
}

async fn trailing_slashes_redirect_to_the_canonical_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    for (method, path, location) in [
        (Method::GET, "/chatroom/", "/chatroom"),
        (Method::POST, "/chatroom/", "/chatroom"),
        (Method::GET, "/user/me/", "/user/me"),
        (Method::GET, "/search/?q=x", "/search?q=x"),
    ] {
        let response = app.request(method, path, Some(&token), None).await;
        assert_eq!(response.status.as_u16(), 308, "{path}");
        assert_eq!(response.header("location"), Some(location));
    }
    // Only the API's own paths: anything else stays a 404, and never leaves this site.
    for path in ["/nothing/", "//evil.example/", "/assets/"] {
        app.get(path, None).await.assert_problem(404, "not_found");
    }

    // A real client follows, keeping the method, the body and its token.
    let (addr, _server) = app.serve_tcp().await;
    let created = reqwest::Client::new()
        .post(format!("http://{addr}/chatroom/"))
        .bearer_auth(&token)
        .json(&json!({"name": "through a redirect"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status().as_u16(), 201);
    let body: Value = created.json().await.unwrap_or_default();
    assert_eq!(body["name"], "through a redirect");
}

async fn search_excludes_words_and_keeps_phrases_in_order(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.basic_daily_limit = 50).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "search").await;
    for text in ["the rain in spain", "spain is sunny", "sunny spain today"] {
        app.send_message(&token, &room, text).await;
    }
    let prompts = |q: &str| {
        let path = format!("/search?q={q}&limit=50");
        let app = &app;
        let token = token.clone();
        async move {
            let found = app.get(&path, Some(&token)).await;
            let mut prompts: Vec<String> = found.assert_status(200)["results"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["message"]["role"] == "user")
                .filter_map(|r| r["message"]["content"].as_str().map(str::to_owned))
                .collect();
            prompts.sort();
            prompts
        }
    };
    assert_eq!(
        prompts("spain%20-rain").await,
        ["spain is sunny", "sunny spain today"]
    );
    assert_eq!(prompts("%22sunny%20spain%22").await, ["sunny spain today"]);
    assert_eq!(prompts("%22spain%20sunny%22").await, Vec::<String>::new());
    assert_eq!(
        prompts("sunny%20-%22spain%20today%22").await,
        ["spain is sunny"]
    );
    assert_eq!(prompts("-rain").await, Vec::<String>::new());
}

async fn of_concurrent_password_changes_exactly_one_wins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, Some("the first one")).await;
    let login = json!({"mobile_number": mobile, "password": "the first one"});
    let token = token_of(&app.post("/auth/login", None, login).await);
    let changes = (0..10).map(|i| {
        let body = json!({"current_password": "the first one", "new_password": format!("new password {i}")});
        app.post("/auth/change-password", Some(&token), body)
    });
    let answers = futures::future::join_all(changes).await;
    let winners: Vec<_> = answers
        .iter()
        .filter(|a| a.status.as_u16() == 200)
        .collect();
    assert_eq!(winners.len(), 1, "one change takes effect");
    // The others find the password changed under them (or their token already revoked).
    for loser in answers.iter().filter(|a| a.status.as_u16() != 200) {
        assert_eq!(loser.status.as_u16(), 401, "{}", loser.text);
        assert!(
            ["invalid_credentials", "unauthorized"]
                .contains(&loser.body["code"].as_str().unwrap_or_default())
        );
    }
    let fresh = winners[0].body["token"].as_str().unwrap_or_default();
    app.get("/user/me", Some(fresh)).await.assert_status(200);
}
