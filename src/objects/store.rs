//! The object store adapter over the `object_store` crate: a local folder (`file://`) or an S3
//! bucket (`s3://bucket/prefix`, with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION` and, for S3-compatible services, `AWS_ENDPOINT_URL`). Writes go through
//! `BufWriter`: a file smaller than one part is one PUT, a larger one a multipart upload (5 MiB
//! parts on S3, 256 KiB writes to a staging file in a folder), so memory per upload stays
//! bounded whatever its size.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{ByteStream, Listed, ObjectError, ObjectWriter, Objects};
use crate::config::Config;

/// Bytes buffered before a write to S3 becomes a multipart upload (S3's smallest part).
const S3_PART_BYTES: usize = 5 * 1024 * 1024;
/// The same for a folder, where a part is a write to a staging file: small, so that many
/// uploads at once hold little memory.
const FOLDER_PART_BYTES: usize = 256 * 1024;

/// The store named by `STORAGE_URL`, or a folder `uploads` in `data_dir` when it is unset.
pub(crate) struct CrateObjects {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    part_bytes: usize,
    /// What it is, for logs (no secret in it).
    pub(crate) described: String,
}

impl CrateObjects {
    pub(crate) fn open(config: &Config) -> anyhow::Result<Self> {
        match config.storage_url.as_deref() {
            None => Self::folder(&config.data_dir.join("uploads")),
            Some(url) if url.starts_with("file://") => {
                Self::folder(&PathBuf::from(&url["file://".len()..]))
            }
            Some(url) if url.starts_with("s3://") => Self::s3(&url["s3://".len()..], config),
            Some(_) => anyhow::bail!("STORAGE_URL must start with file:// or s3://"),
        }
    }

    fn folder(dir: &FsPath) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the uploads folder {}", dir.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening the uploads folder {}", dir.display()))?;
        Ok(Self {
            inner: Arc::new(store),
            prefix: Path::default(),
            part_bytes: FOLDER_PART_BYTES,
            described: format!("folder {}", dir.display()),
        })
    }

    fn s3(rest: &str, config: &Config) -> anyhow::Result<Self> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!bucket.is_empty(), "STORAGE_URL s3:// must name a bucket");
        let options = object_store::ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60));
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(options)
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..Default::default()
            });
        if let Some(endpoint) = &config.aws_endpoint_url {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let Some(region) = &config.aws_region {
            builder = builder.with_region(region);
        }
        if let (Some(key), Some(secret)) =
            (&config.aws_access_key_id, &config.aws_secret_access_key)
        {
            builder = builder
                .with_access_key_id(key.expose())
                .with_secret_access_key(secret.expose());
        }
        let store = builder.build().context("configuring the S3 object store")?;
        Ok(Self {
            inner: Arc::new(store),
            prefix: Path::from(prefix),
            part_bytes: S3_PART_BYTES,
            described: format!("s3 bucket {bucket}"),
        })
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }
}

fn unavailable(err: object_store::Error) -> ObjectError {
    match err {
        object_store::Error::NotFound { .. } => ObjectError::NotFound,
        other => ObjectError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Objects for CrateObjects {
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let path = self.path(key);
        let writer = BufWriter::with_capacity(Arc::clone(&self.inner), path, self.part_bytes);
        Ok(Box::new(Writer(writer)))
    }

    async fn read(&self, key: &str) -> Result<ByteStream, ObjectError> {
        let found = self.inner.get(&self.path(key)).await.map_err(unavailable)?;
        Ok(found.into_stream().map_err(unavailable).boxed())
    }

    async fn read_all(&self, key: &str) -> Result<Bytes, ObjectError> {
        let found = self.inner.get(&self.path(key)).await.map_err(unavailable)?;
        found.bytes().await.map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn list(&self) -> Result<Vec<Listed>, ObjectError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let found: Vec<object_store::ObjectMeta> = self
            .inner
            .list(prefix)
            .try_collect()
            .await
            .map_err(unavailable)?;
        let strip = |location: &Path| {
            let key = location.as_ref();
            match prefix {
                Some(prefix) => key
                    .strip_prefix(prefix.as_ref())
                    .map_or(key, |rest| rest.trim_start_matches('/'))
                    .to_owned(),
                None => key.to_owned(),
            }
        };
        Ok(found
            .iter()
            .map(|meta| Listed {
                key: strip(&meta.location),
                written_at: meta.last_modified,
            })
            .collect())
    }

    async fn exists(&self, key: &str) -> Result<bool, ObjectError> {
        match self.inner.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(unavailable(err)),
        }
    }
}

struct Writer(BufWriter);

#[async_trait]
impl ObjectWriter for Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        self.0.put(chunk).await.map_err(unavailable)
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ObjectError> {
        use tokio::io::AsyncWriteExt;
        self.0
            .shutdown()
            .await
            .map_err(|err| ObjectError::Unavailable(err.to_string()))
    }

    async fn abort(mut self: Box<Self>) {
        if let Err(err) = self.0.abort().await {
            tracing::warn!(error = %err, "an unfinished upload could not be aborted");
        }
    }
}
