//! Upload use cases: receiving a file (streamed into the object store while its type and
//! size are checked), serving it back to its owner, and the files of a prompt.

use axum::extract::multipart::{Field, Multipart, MultipartError};
use bytes::Bytes;

use super::cleanup::ExpireUpload;
use super::model::{MAX_PER_PROMPT, Upload, UploadId};
use super::sniff::{Refusal, Sniffer, clean_name};
use crate::app::App;
use crate::error::{AppError, Result};
use crate::objects::{ObjectError, ObjectWriter};
use crate::users::model::UserId;

/// The one form field that carries the file.
const FILE_FIELD: &str = "file";

impl From<ObjectError> for AppError {
    fn from(err: ObjectError) -> Self {
        match err {
            ObjectError::NotFound => Self::NotFound,
            ObjectError::Unavailable(why) => {
                tracing::warn!(error = %why, "object store unavailable");
                Self::Unavailable("the file store".into())
            }
        }
    }
}

/// A multipart error: the body was over the limit, or not well-formed.
fn multipart_error(err: &MultipartError, max: u64) -> AppError {
    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::FileTooLarge(max);
    }
    AppError::MalformedRequest(format!(
        "The multipart body is malformed: {}.",
        err.body_text()
    ))
}

/// Receives the one `file` part of `form`: streamed into the object store, its type read from
/// its bytes, refused past `UPLOAD_MAX_BYTES` while reading. The upload exists (and expires
/// unless a prompt carries it within a day) only once every check passed and the bytes are
/// stored whole; a refused file leaves nothing behind.
pub(crate) async fn receive(app: &App, user: UserId, mut form: Multipart) -> Result<Upload> {
    let max = app.config.upload_max_bytes;
    let mut received: Option<(Upload, Box<dyn ObjectWriter>)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                return abandon(
                    received.map(|(_, writer)| writer),
                    multipart_error(&err, max),
                )
                .await;
            }
        };
        if field.name() != Some(FILE_FIELD) || received.is_some() {
            let why = "must be one part named `file`, with nothing beside it";
            return abandon(
                received.map(|(_, writer)| writer),
                AppError::invalid(FILE_FIELD, why),
            )
            .await;
        }
        received = Some(store_file(app, user, field).await?);
    }
    let Some((upload, writer)) = received else {
        return Err(AppError::invalid(
            FILE_FIELD,
            "is missing: send the file in a part named `file`",
        ));
    };
    writer.finish().await?;
    let expiry = ExpireUpload::queued(&upload);
    if let Err(err) = app.store.uploads.insert(&upload, &expiry).await {
        // Nothing refers to the bytes: they go at once (the expiry was not queued).
        if let Err(gone) = app.objects.delete(&upload.key()).await {
            tracing::warn!(error = %gone, "an upload's bytes outlived its failed insert");
        }
        return Err(err.into());
    }
    Ok(upload)
}

/// Drops a file being written, then answers `error`.
async fn abandon<T>(writer: Option<Box<dyn ObjectWriter>>, error: AppError) -> Result<T> {
    if let Some(writer) = writer {
        writer.abort().await;
    }
    Err(error)
}

/// Streams one file part into the object store, checking it as it goes. On `Err`, nothing
/// is left in the store.
async fn store_file(
    app: &App,
    user: UserId,
    mut field: Field<'_>,
) -> Result<(Upload, Box<dyn ObjectWriter>)> {
    let max = app.config.upload_max_bytes;
    let name = clean_name(field.file_name().unwrap_or_default())
        .map_err(|why| AppError::invalid("file.name", why))?;
    let declared = field.content_type().map(str::to_owned);
    let id = UploadId::new();
    let key = super::model::object_key(user, id);
    let mut writer = app.objects.writer(&key).await?;
    let mut sniffer = Sniffer::default();
    loop {
        let chunk: Bytes = match field.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => return abandon(Some(writer), multipart_error(&err, max)).await,
        };
        let refused = if sniffer.size() + chunk.len() as u64 > max {
            Some(AppError::FileTooLarge(max))
        } else {
            sniffer.feed(&chunk).err().map(refusal)
        };
        if let Some(error) = refused {
            return abandon(Some(writer), error).await;
        }
        if let Err(err) = writer.write(chunk).await {
            return abandon(Some(writer), err.into()).await;
        }
    }
    let sniffed = match sniffer.finish(declared.as_deref()) {
        Ok(sniffed) => sniffed,
        Err(refused) => return abandon(Some(writer), refusal(refused)).await,
    };
    let upload = Upload {
        id,
        user_id: user,
        name,
        mime_type: sniffed.kind.mime_type().to_owned(),
        size: sniffed.size,
        tokens: sniffed.tokens,
        created_at: app.clock.now(),
    };
    Ok((upload, writer))
}

fn refusal(refused: Refusal) -> AppError {
    match refused {
        Refusal::Empty => AppError::invalid(FILE_FIELD, "must not be empty"),
        other => AppError::UnsupportedMediaType(other.to_string()),
    }
}

/// The user's upload `id` and a stream of its bytes.
pub(crate) async fn open(
    app: &App,
    user: UserId,
    id: UploadId,
) -> Result<(Upload, crate::objects::ByteStream)> {
    let upload = app
        .store
        .uploads
        .find(user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let bytes = app.objects.read(&upload.key()).await?;
    Ok((upload, bytes))
}

/// The files a prompt names: at most four, each the user's (422 naming `attachments`
/// otherwise), in the order given.
pub(crate) async fn for_prompt(app: &App, user: UserId, ids: &[UploadId]) -> Result<Vec<Upload>> {
    if ids.len() > MAX_PER_PROMPT {
        return Err(AppError::invalid(
            "attachments",
            &format!("at most {MAX_PER_PROMPT} files per prompt"),
        ));
    }
    let mut unique = ids.to_vec();
    unique.sort_by_key(|id| id.0);
    unique.dedup();
    if unique.len() != ids.len() {
        return Err(AppError::invalid("attachments", "names a file twice"));
    }
    let found = app.store.uploads.owned(user, ids).await?;
    if let Some(missing) = ids.iter().find(|id| !found.iter().any(|u| u.id == **id)) {
        return Err(AppError::invalid(
            "attachments",
            &format!("{missing} is not one of your uploads"),
        ));
    }
    // The model will be sent the bytes: a prompt is accepted only while they can be read.
    for upload in &found {
        if !app.objects.exists(&upload.key()).await? {
            tracing::error!(upload_id = %upload.id, "an upload's bytes are missing from the store");
            return Err(gone());
        }
    }
    Ok(found)
}

/// 422 for a prompt whose file was deleted while it was being accepted.
pub(crate) fn gone() -> AppError {
    AppError::invalid("attachments", "names an upload that no longer exists")
}
