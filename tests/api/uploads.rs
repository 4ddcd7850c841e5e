//! Attachments (issue 14): files uploaded streamed into the object store (a folder on SQLite,
//! an S3 bucket on PostgreSQL when `TEST_S3_URL` is set, always in CI), typed by their bytes,
//! served back to their owner only, sent to Gemini inline with their prompt and its history,
//! and deleted with their room or a day after arriving unattached. Bad input changes nothing.

use axum::body::Body;
use base64::Engine as _;
use gemchat::config::{AiProviderKind, Config, Secret};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::fakes::{FakeGemini, GEMINI_KEY, sse_reply};
use crate::harness::{Backend, FreshBucket, Part, TestApp, multipart, s3_url};

backend_tests!(
    an_upload_is_served_back_to_its_owner_only,
    a_prompt_carries_its_files_to_gemini_inline_and_in_later_history,
    refused_files_leave_nothing_behind,
    a_prompt_names_only_its_authors_files,
    an_edit_keeps_or_replaces_the_prompts_files,
    a_rooms_files_go_with_it,
    an_upload_never_attached_expires_after_a_day,
    an_unreachable_store_refuses_files_and_their_prompts_whole,
    objects_without_an_upload_are_swept_daily,
);

/// A 1 x 1 PNG.
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

pub(crate) const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n\
3 0 obj << /Type /Page /Parent 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// A gemchat whose files live in a folder (SQLite) or a fresh S3 bucket (PostgreSQL, when an
/// S3 server is given).
pub(crate) async fn spawn(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    let bucket = match (backend, s3_url()) {
        (Backend::Postgres, Some(url)) => Some(FreshBucket::create(&url).await),
        _ => None,
    };
    TestApp::spawn_with(backend, move |config| {
        if let Some(bucket) = &bucket {
            bucket.configure(config);
        }
        configure(config);
    })
    .await
}

async fn spawn_with_gemini(backend: Backend, gemini: &FakeGemini) -> TestApp {
    let uri = gemini.uri();
    spawn(backend, move |config| {
        config.ai_provider = Some(AiProviderKind::Gemini);
        config.gemini_api_key = Some(Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
    })
    .await
}

fn send_body(content: &str, attachments: &[&str]) -> Value {
    json!({"content": content, "attachments": attachments})
}

/// Sends a prompt with files to the room.
pub(crate) async fn send_with(
    app: &TestApp,
    token: &str,
    room: &str,
    content: &str,
    files: &[&str],
) -> crate::harness::TestResponse {
    let path = format!("/chatroom/{room}/message");
    app.post(&path, Some(token), send_body(content, files))
        .await
}

async fn an_upload_is_served_back_to_its_owner_only(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (token, _) = app.new_user().await;
    let uploaded = app.upload(&token, "dot.png", Some("image/png"), PNG).await;
    let attachment = uploaded.assert_status(201).clone();
    assert_eq!(attachment["name"], "dot.png");
    assert_eq!(attachment["mime_type"], "image/png");
    assert_eq!(attachment["size"], PNG.len());
    assert!(attachment["created_at"].is_string());
    let id = attachment["id"].as_str().unwrap_or_default();

    let served = app.get(&format!("/uploads/{id}"), Some(&token)).await;
    served.assert_status(200);
    assert_eq!(served.bytes.as_ref(), PNG);
    assert_eq!(served.header("content-type"), Some("image/png"));
    assert_eq!(served.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(served.header("content-security-policy"), Some("sandbox"));
    let disposition = served.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("inline; filename=\"dot.png\""),
        "{disposition}"
    );

    // A PDF is a download; text is served as UTF-8 text; no declared type is needed.
    let pdf = app.uploaded(&token, "report.pdf", PDF).await;
    let served = app.get(&format!("/uploads/{pdf}"), Some(&token)).await;
    assert_eq!(served.header("content-type"), Some("application/pdf"));
    let disposition = served.header("content-disposition").unwrap_or_default();
    assert!(disposition.starts_with("attachment; "), "{disposition}");
    let notes = app
        .uploaded(&token, "notes.txt", "Namasté\n".as_bytes())
        .await;
    let served = app.get(&format!("/uploads/{notes}"), Some(&token)).await;
    assert_eq!(
        served.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(served.text, "Namasté\n");

    // Another user learns nothing; neither does nobody.
    let (stranger, _) = app.new_user().await;
    let theirs = app.get(&format!("/uploads/{id}"), Some(&stranger)).await;
    theirs.assert_problem(404, "not_found");
    let unknown = format!("/uploads/{}", uuid::Uuid::now_v7());
    app.get(&unknown, Some(&token))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/uploads/{id}"), None)
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(app.stored_objects().await, 3);
}

/// The `inlineData` parts of each user turn of one request to Gemini, as (type, bytes).
fn inline_files(request: &Value) -> Vec<Vec<(String, Vec<u8>)>> {
    let turns = request["contents"].as_array().cloned().unwrap_or_default();
    turns
        .iter()
        .filter(|turn| turn["role"] == "user")
        .map(|turn| {
            let parts = turn["parts"].as_array().cloned().unwrap_or_default();
            parts
                .iter()
                .filter_map(|part| {
                    let inline = part.get("inlineData")?;
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(inline["data"].as_str()?)
                        .ok()?;
                    Some((inline["mimeType"].as_str()?.to_owned(), data))
                })
                .collect()
        })
        .collect()
}

async fn a_prompt_carries_its_files_to_gemini_inline_and_in_later_history(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["A dot ", "and a report."]))
        .mount(&gemini.server)
        .await;
    let app = spawn_with_gemini(backend, &gemini).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "files").await;
    let png = app.uploaded(&token, "dot.png", PNG).await;
    let pdf = app.uploaded(&token, "report.pdf", PDF).await;

    let sent = send_with(&app, &token, &room, "What is in these?", &[&png, &pdf]).await;
    let sent = sent.assert_status(202).clone();
    let names: Vec<&Value> = sent["message"]["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| &a["name"])
        .collect();
    assert_eq!(names, [&json!("dot.png"), &json!("report.pdf")]);
    assert_eq!(sent["reply"]["attachments"], json!([]));
    app.drain_jobs().await;
    app.send_message(&token, &room, "And the colour?").await;
    app.drain_jobs().await;

    let requests = gemini.requests().await;
    assert_eq!(requests.len(), 2);
    let first = inline_files(&requests[0]);
    let expected = vec![
        ("image/png".to_owned(), PNG.to_vec()),
        ("application/pdf".to_owned(), PDF.to_vec()),
    ];
    assert_eq!(
        first,
        vec![expected.clone()],
        "the exact bytes, beside the text"
    );
    assert_eq!(
        requests[0]["contents"][0]["parts"][0]["text"],
        "What is in these?"
    );
    let second = inline_files(&requests[1]);
    assert_eq!(
        second,
        vec![expected, vec![]],
        "history turns carry their files"
    );

    // Reading the room shows the files with the prompt.
    let page = app.get(&format!("/chatroom/{room}"), Some(&token)).await;
    let page = page.assert_status(200).clone();
    assert_eq!(page["messages"][0]["attachments"][0]["id"], json!(png));
    assert_eq!(
        page["messages"][0]["attachments"][1]["mime_type"],
        "application/pdf"
    );
}

async fn refused_files_leave_nothing_behind(backend: Backend) {
    let app = spawn(backend, |config| config.upload_max_bytes = 1_000).await;
    let (token, _) = app.new_user().await;
    let refused = [
        (
            415,
            "unsupported_media_type",
            ("a.png", Some("image/png"), PDF.to_vec()),
        ),
        (
            415,
            "unsupported_media_type",
            ("a.png", Some("image/png"), b"<html>".to_vec()),
        ),
        (
            415,
            "unsupported_media_type",
            ("a.html", None, b"<!DOCTYPE html><script>".to_vec()),
        ),
        (
            415,
            "unsupported_media_type",
            (
                "a.svg",
                Some("image/svg+xml"),
                b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
            ),
        ),
        (
            415,
            "unsupported_media_type",
            ("a.bin", None, vec![0, 1, 2, 3, 0xFF, 0xFE]),
        ),
        (422, "validation_failed", ("empty.txt", None, Vec::new())),
        (
            413,
            "payload_too_large",
            ("big.txt", None, vec![b'a'; 1_001]),
        ),
        (
            422,
            "validation_failed",
            (&*"x".repeat(300), None, b"hi".to_vec()),
        ),
        (422, "validation_failed", ("../", None, b"hi".to_vec())),
    ];
    for (status, code, (name, content_type, bytes)) in refused {
        let answer = app.upload(&token, name, content_type, &bytes).await;
        answer.assert_problem(status, code);
    }
    // Exactly at the limit is fine; a name's path is dropped.
    let at_limit = app
        .upload(&token, "../../etc/pass.txt", None, &[b'a'; 1_000])
        .await;
    assert_eq!(at_limit.assert_status(201)["name"], "pass.txt");

    // Far over the limit: refused while arriving, without reading it all.
    let chunks =
        (0..2_000).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 64 * 1024])));
    let head = bytes::Bytes::from(
        "--gemchat-test-boundary\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"huge.txt\"\r\n\r\n",
    );
    let body = futures::stream::iter(std::iter::once(Ok(head)).chain(chunks));
    let huge = app.upload_body(&token, Body::from_stream(body)).await;
    huge.assert_problem(413, "payload_too_large");

    // The form itself: no file part, two, another part, not a form at all.
    let forms: [&[Part<'_>]; 3] = [
        &[("other", None, None, b"x")],
        &[
            ("file", Some("a.txt"), None, b"a"),
            ("file", Some("b.txt"), None, b"b"),
        ],
        &[
            ("file", Some("a.txt"), None, b"a"),
            ("note", None, None, b"b"),
        ],
    ];
    for form in forms {
        let answer = app.upload_body(&token, Body::from(multipart(form))).await;
        answer.assert_problem(422, "validation_failed");
    }
    app.upload_body(&token, Body::empty())
        .await
        .assert_problem(400, "malformed_request");
    let json = app
        .post("/uploads", Some(&token), json!({"file": "x"}))
        .await;
    json.assert_problem(400, "malformed_request");
    assert_eq!(
        app.stored_objects().await,
        1,
        "only the accepted file is stored"
    );
}

async fn a_prompt_names_only_its_authors_files(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (token, _) = app.new_user().await;
    let (stranger, _) = app.new_user().await;
    let room = app.chatroom(&token, "mine").await;
    let theirs = app.uploaded(&stranger, "theirs.png", PNG).await;
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(app.uploaded(&token, &format!("{n}.txt"), b"words").await);
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    for attachments in [
        vec![theirs.as_str()],
        vec![unknown.as_str()],
        mine.iter().map(String::as_str).collect(),
        vec![mine[0].as_str(), mine[0].as_str()],
    ] {
        let refused = send_with(&app, &token, &room, "look", &attachments).await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["errors"][0]["field"], "attachments");
    }
    let page = app.get(&format!("/chatroom/{room}"), Some(&token)).await;
    assert_eq!(
        page.assert_status(200)["messages"],
        json!([]),
        "nothing was stored"
    );
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(
        me.assert_status(200)["usage"]["used_today"],
        0,
        "no prompt was counted"
    );
}

async fn an_edit_keeps_or_replaces_the_prompts_files(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "edits").await;
    let png = app.uploaded(&token, "dot.png", PNG).await;
    let pdf = app.uploaded(&token, "report.pdf", PDF).await;
    let sent = send_with(&app, &token, &room, "first", &[&png]).await;
    let prompt = sent.assert_status(202)["message"]["id"].clone();
    app.drain_jobs().await;
    let ids = |accepted: &Value| -> Vec<Value> {
        let files = accepted["message"]["attachments"].as_array().cloned();
        files
            .unwrap_or_default()
            .iter()
            .map(|a| a["id"].clone())
            .collect()
    };

    let edit = format!(
        "/chatroom/{room}/messages/{}/edit",
        prompt.as_str().unwrap_or_default()
    );
    let kept = app
        .post(&edit, Some(&token), json!({"content": "kept"}))
        .await;
    assert_eq!(ids(kept.assert_status(202)), [json!(png)]);
    let replaced = app
        .post(&edit, Some(&token), send_body("replaced", &[&pdf]))
        .await;
    assert_eq!(ids(replaced.assert_status(202)), [json!(pdf)]);
    let none = app.post(&edit, Some(&token), send_body("none", &[])).await;
    assert_eq!(ids(none.assert_status(202)), Vec::<Value>::new());
    app.drain_jobs().await;
    // Each version keeps its own files.
    let first = app
        .get(
            &format!("/chatroom/{room}/messages?limit=100"),
            Some(&token),
        )
        .await;
    let messages = first.assert_status(200)["messages"].clone();
    assert_eq!(messages[0]["content"], "none");
    assert_eq!(
        messages[0]["versions"]["ids"].as_array().map(Vec::len),
        Some(4)
    );
}

async fn a_rooms_files_go_with_it(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (token, _) = app.new_user().await;
    let doomed = app.chatroom(&token, "doomed").await;
    let kept = app.chatroom(&token, "kept").await;
    let only_doomed = app.uploaded(&token, "dot.png", PNG).await;
    let shared = app.uploaded(&token, "report.pdf", PDF).await;
    for (room, files) in [
        (&doomed, vec![&only_doomed, &shared]),
        (&kept, vec![&shared]),
    ] {
        let files: Vec<&str> = files.into_iter().map(String::as_str).collect();
        let sent = send_with(&app, &token, room, "hi", &files).await;
        sent.assert_status(202);
    }
    app.drain_jobs().await;
    assert_eq!(app.stored_objects().await, 2);
    let deleted = app
        .request(
            axum::http::Method::DELETE,
            &format!("/chatroom/{doomed}"),
            Some(&token),
            None,
        )
        .await;
    deleted.assert_status(204);
    app.drain_jobs().await;
    let gone = app
        .get(&format!("/uploads/{only_doomed}"), Some(&token))
        .await;
    gone.assert_problem(404, "not_found");
    let still = app.get(&format!("/uploads/{shared}"), Some(&token)).await;
    assert_eq!(
        still.assert_status(200),
        &Value::Null,
        "a PDF body is not JSON"
    );
    assert_eq!(still.bytes.as_ref(), PDF);
    assert_eq!(app.stored_objects().await, 1, "the other room's file stays");
}

async fn an_upload_never_attached_expires_after_a_day(backend: Backend) {
    // The token outlives the day the test skips over.
    let app = spawn(backend, |config| config.jwt_ttl = 7 * 86_400).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "expiry").await;
    let loose = app.uploaded(&token, "loose.png", PNG).await;
    let attached = app.uploaded(&token, "attached.pdf", PDF).await;
    let sent = send_with(&app, &token, &room, "hi", &[&attached]).await;
    sent.assert_status(202);
    app.drain_jobs().await;
    app.clock.advance(chrono::Duration::hours(23));
    app.drain_jobs().await;
    app.get(&format!("/uploads/{loose}"), Some(&token))
        .await
        .assert_status(200);

    app.clock.advance(chrono::Duration::hours(2));
    app.drain_jobs().await;
    let expired = app.get(&format!("/uploads/{loose}"), Some(&token)).await;
    expired.assert_problem(404, "not_found");
    app.get(&format!("/uploads/{attached}"), Some(&token))
        .await
        .assert_status(200);
    assert_eq!(app.stored_objects().await, 1);
    // An expired file cannot be attached any more.
    let late = send_with(&app, &token, &room, "again", &[&loose]).await;
    late.assert_problem(422, "validation_failed");
}

/// Where nothing answers.
fn unreachable_store(config: &mut Config) {
    config.storage_url = Some("s3://gone/uploads".into());
    config.aws_endpoint_url = Some("http://127.0.0.1:9".into());
    config.aws_region = Some("us-east-1".into());
    config.aws_access_key_id = Some(Secret::new("testing"));
    config.aws_secret_access_key = Some(Secret::new("testing"));
}

async fn an_unreachable_store_refuses_files_and_their_prompts_whole(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "outage").await;
    let png = app.uploaded(&token, "dot.png", PNG).await;
    // A second process of the same deployment whose store is down.
    let cut_off = app.sibling(unreachable_store).await;
    let refused = cut_off
        .upload(&token, "dot.png", Some("image/png"), PNG)
        .await;
    refused.assert_problem(503, "unavailable");
    let sent = send_with(&cut_off, &token, &room, "hi", &[&png]).await;
    sent.assert_problem(503, "unavailable");
    let served = cut_off.get(&format!("/uploads/{png}"), Some(&token)).await;
    served.assert_problem(503, "unavailable");

    let page = app.get(&format!("/chatroom/{room}"), Some(&token)).await;
    assert_eq!(
        page.assert_status(200)["messages"],
        json!([]),
        "the prompt was not accepted"
    );
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["usage"]["used_today"], 0);
    assert_eq!(app.stored_objects().await, 1, "only the first file");
}

async fn objects_without_an_upload_are_swept_daily(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (token, _) = app.new_user().await;
    let kept = app.uploaded(&token, "dot.png", PNG).await;
    // Bytes whose row never committed (a crash in between), and something not ours.
    let orphan = format!("{}/{}", uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    app.put_raw_object(&orphan, PNG).await;
    app.put_raw_object("notes/readme.txt", b"not an upload")
        .await;
    assert_eq!(app.stored_objects().await, 3);

    gemchat::uploads::cleanup::SweepObjects::schedule(&app.app)
        .await
        .expect("queued");
    gemchat::uploads::cleanup::SweepObjects::schedule(&app.app)
        .await
        .expect("queued once");
    app.drain_jobs().await;
    assert_eq!(app.stored_objects().await, 3, "not before it is due");
    app.clock.advance(chrono::Duration::hours(2));
    assert_eq!(app.drain_jobs().await, 1, "one sweep");
    assert_eq!(app.stored_objects().await, 2, "the orphan went");
    app.get(&format!("/uploads/{kept}"), Some(&token))
        .await
        .assert_status(200);
    assert_eq!(app.drain_jobs().await, 0, "the next sweep is a day away");
    let later = format!("{}/{}", uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    app.put_raw_object(&later, PNG).await;
    app.clock.advance(chrono::Duration::hours(25));
    app.drain_jobs().await;
    // The next day's sweep took the new orphan (and the unattached upload expired).
    assert_eq!(
        app.stored_objects().await,
        1,
        "only the foreign object is left"
    );
}
