//! Uploads in tests: multipart bodies, the object store each test gets (a folder of its own,
//! or a fresh bucket on the S3-protocol server at `TEST_S3_URL`), and what is stored in it.

use axum::body::Body;
use axum::http::{Method, Request, header};
use gemchat::config::{Config, Secret};
use uuid::Uuid;

use super::{TestApp, TestResponse, is_ci};

const BOUNDARY: &str = "gemchat-test-boundary";

/// The S3-protocol server tests use; `None` keeps uploads in a folder off CI, and under
/// `CI=true` a missing `TEST_S3_URL` fails the run.
pub fn s3_url() -> Option<String> {
    let url = std::env::var("TEST_S3_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() && is_ci() {
        panic!("CI=true but TEST_S3_URL is not set: the S3 suite must run in CI");
    }
    url
}

/// A new, empty bucket on the S3 server at `url`.
pub struct FreshBucket {
    url: String,
    bucket: String,
}

impl FreshBucket {
    pub async fn create(url: &str) -> Self {
        super::install_crypto();
        let bucket = format!("gemchat-{}", Uuid::now_v7().simple());
        let created = reqwest::Client::new()
            .put(format!("{url}/{bucket}"))
            .send()
            .await
            .expect("the S3 server answers");
        assert!(
            created.status().is_success(),
            "creating a bucket: {}",
            created.status()
        );
        Self {
            url: url.to_owned(),
            bucket,
        }
    }

    /// Points `config` at the bucket.
    pub fn configure(&self, config: &mut Config) {
        config.storage_url = Some(format!("s3://{}/uploads", self.bucket));
        config.aws_endpoint_url = Some(self.url.clone());
        config.aws_region = Some("us-east-1".into());
        config.aws_access_key_id = Some(Secret::new("testing"));
        config.aws_secret_access_key = Some(Secret::new("testing"));
    }
}

/// One part of a multipart body: `(field, file name, type, bytes)`.
pub type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart body of `parts`.
pub fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, name, content_type, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match name {
            Some(name) => format!("form-data; name=\"{field}\"; filename=\"{name}\""),
            None => format!("form-data; name=\"{field}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        if let Some(content_type) = content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl TestApp {
    /// `POST /uploads` with `body` (a multipart body made by [`multipart`]).
    pub async fn upload_body(&self, token: &str, body: Body) -> TestResponse {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/uploads")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .expect("a valid request");
        self.send(request).await
    }

    /// Uploads one file.
    pub async fn upload(
        &self,
        token: &str,
        name: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> TestResponse {
        let body = multipart(&[("file", Some(name), content_type, bytes)]);
        self.upload_body(token, Body::from(body)).await
    }

    /// Uploads one file that must be accepted; its id.
    pub async fn uploaded(&self, token: &str, name: &str, bytes: &[u8]) -> String {
        let uploaded = self.upload(token, name, None, bytes).await;
        let id = uploaded.assert_status(201)["id"]
            .as_str()
            .map(str::to_owned);
        id.expect("an upload id")
    }

    /// Writes `bytes` under `key` straight into the app's store, as a crash or another program
    /// could leave them.
    pub async fn put_raw_object(&self, key: &str, bytes: &[u8]) {
        let config = self.app.config();
        match config.storage_url.as_deref() {
            Some(url) if url.starts_with("s3://") => {
                let (bucket, prefix) = url["s3://".len()..].split_once('/').unwrap_or_default();
                let endpoint = config.aws_endpoint_url.as_deref().unwrap_or_default();
                let put = reqwest::Client::new()
                    .put(format!("{endpoint}/{bucket}/{prefix}/{key}"))
                    .body(bytes.to_vec())
                    .send()
                    .await
                    .expect("the S3 server answers");
                assert!(put.status().is_success(), "{}", put.status());
            }
            _ => {
                let path = config.data_dir.join("uploads").join(key);
                std::fs::create_dir_all(path.parent().expect("a folder")).expect("a folder");
                std::fs::write(path, bytes).expect("a file");
            }
        }
    }

    /// How many objects the app's store holds (staging files of a folder count too).
    pub async fn stored_objects(&self) -> usize {
        let config = self.app.config();
        match config.storage_url.as_deref() {
            Some(url) if url.starts_with("s3://") => {
                let bucket = url["s3://".len()..].split('/').next().unwrap_or_default();
                let endpoint = config.aws_endpoint_url.as_deref().unwrap_or_default();
                let listing = reqwest::get(format!("{endpoint}/{bucket}?list-type=2"))
                    .await
                    .expect("the S3 server answers")
                    .text()
                    .await
                    .unwrap_or_default();
                listing.matches("<Key>").count()
            }
            _ => count_files(&config.data_dir.join("uploads")),
        }
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}
