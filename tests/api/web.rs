//! The web client as the server delivers it: the page and its files, their headers and
//! caching, and that its code calls only operations of the public API. (What the client does
//! in a browser is tested by `e2e/`, in headless Chromium.)

use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::Value;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(
    the_page_is_served_at_the_root_with_a_strict_policy,
    every_file_the_client_loads_is_served_with_its_type,
    unchanged_files_answer_304_to_a_revalidation,
    unknown_files_are_problem_json_404s,
    the_client_calls_only_documented_operations,
);

/// The client's source files (name, text), read from `src/web/assets/`.
fn client_files() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/assets");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("src/web/assets")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            Some((name, std::fs::read_to_string(&path).ok()?))
        })
        .collect();
    files.sort();
    files
}

async fn the_page_is_served_at_the_root_with_a_strict_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let page = app.get("/", None).await;
    page.assert_status(200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text.contains("<title>gemchat</title>"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(
        !csp.contains("unsafe"),
        "no unsafe-inline or unsafe-eval: {csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    // The API's own documentation stays where it was.
    app.get("/docs/", None).await.assert_status(200);
}

/// The `src`/`href` targets of the page and the modules the scripts import.
fn referenced_files() -> Vec<String> {
    let mut files = Vec::new();
    for (_, text) in client_files() {
        for marker in ["src=\"", "href=\"", "from \"./"] {
            for piece in text.split(marker).skip(1) {
                let target = piece.split('"').next().unwrap_or_default();
                if marker == "from \"./" {
                    files.push(format!("/assets/{target}"));
                } else if target.starts_with("/assets/") {
                    files.push(target.to_owned());
                }
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

async fn every_file_the_client_loads_is_served_with_its_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let files = referenced_files();
    // Every file of the folder is loaded by the page (so none is left out of the binary).
    for (name, _) in client_files() {
        let expected = format!("/assets/{name}");
        if name != "index.html" {
            assert!(files.contains(&expected), "{expected} in {files:?}");
        }
    }
    for file in &files {
        let response = app.get(file, None).await;
        response.assert_status(200);
        let kind = response.header("content-type").unwrap_or_default();
        let wanted = match file.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected file type {other:?}"),
        };
        assert_eq!(kind, wanted, "{file}");
        assert!(response.header("etag").is_some(), "{file} has a validator");
    }
    let head = app
        .request(Method::HEAD, "/assets/app.js", None, None)
        .await;
    head.assert_status(200);
    assert!(head.text.is_empty());
}

async fn unchanged_files_answer_304_to_a_revalidation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.get("/assets/app.js", None).await;
    let etag = first.header("etag").unwrap_or_default().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let request = |tag: &str| {
        Request::builder()
            .uri("/assets/app.js")
            .header(header::IF_NONE_MATCH, tag)
            .body(Body::empty())
            .expect("valid request")
    };
    let again = app.send(request(&etag)).await;
    again.assert_status(304);
    assert!(again.text.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    app.send(request("\"stale\"")).await.assert_status(200);
    // Each file has its own validator.
    let css = app.get("/assets/app.css", None).await;
    assert_ne!(css.header("etag"), Some(etag.as_str()));
}

async fn unknown_files_are_problem_json_404s(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/..%2Fmod.rs",
        "/assets/",
        "/index.html",
    ] {
        app.get(path, None).await.assert_problem(404, "not_found");
    }
    let post = app.post("/", None, Value::Null).await;
    post.assert_problem(405, "method_not_allowed");
}

/// `(method, path template)` of every `call("METHOD", "/path…")` in the client, with each
/// `${…}` as `{}` and the query string dropped, plus the event stream it reads.
fn client_operations() -> Vec<(String, String)> {
    let mut operations = vec![("GET".to_owned(), "/chatroom/{}/events".to_owned())];
    for (_, text) in client_files() {
        for piece in text.split("call(\"").skip(1) {
            let Some((method, rest)) = piece.split_once('"') else {
                continue;
            };
            let rest = rest.trim_start_matches([',', ' ']);
            let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '`')) else {
                continue;
            };
            let literal = rest[1..].split(quote).next().unwrap_or_default();
            let mut path = String::new();
            let mut inside = 0;
            for c in literal.chars() {
                match (c, inside) {
                    ('$', 0) => {}
                    ('{', _) => {
                        if inside == 0 {
                            path.push_str("{}");
                        }
                        inside += 1;
                    }
                    ('}', _) => inside -= 1,
                    (c, 0) => path.push(c),
                    _ => {}
                }
            }
            let path = path.split('?').next().unwrap_or_default().to_owned();
            operations.push((method.to_owned(), path));
        }
    }
    operations
}

async fn the_client_calls_only_documented_operations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = app.get("/openapi.json", None).await;
    let paths = doc.assert_status(200)["paths"].clone();
    let documented: Vec<(String, String)> = paths
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            let template: String = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "{}"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), template.clone()))
        })
        .collect();
    let used = client_operations();
    assert!(used.len() >= 15, "found the client's calls: {used:?}");
    for operation in &used {
        assert!(
            documented.contains(operation),
            "the client calls {operation:?}, which the OpenAPI document does not describe"
        );
    }
}
