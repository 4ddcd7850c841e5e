//! HTTP handlers of `/uploads`.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{Upload, UploadId};
use super::service;
use crate::error::{AppError, Result};
use crate::http::caller::AuthUser;
use crate::http::extract::{AppJson, AppPath};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::messages::model::AttachmentView;

/// The routes; a body may be as large as one file of `max_file_bytes` and its form framing.
pub(crate) fn router(max_file_bytes: u64) -> OpenApiRouter<AppState> {
    let max_body = usize::try_from(max_file_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    OpenApiRouter::new()
        .routes(routes!(upload_file))
        .routes(routes!(download_file))
        .layer(DefaultBodyLimit::max(max_body))
}

/// The form of `POST /uploads`.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the form; the handler streams it
pub(crate) struct UploadForm {
    /// The file, with its name (`filename`) and, optionally, its type: PNG, JPEG, WebP,
    /// HEIC/HEIF, PDF or UTF-8 text.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

impl From<&Upload> for AttachmentView {
    fn from(upload: &Upload) -> Self {
        Self {
            id: upload.id.0,
            name: upload.name.clone(),
            mime_type: upload.mime_type.clone(),
            size: upload.size,
            created_at: upload.created_at,
        }
    }
}

/// Uploads a file for prompts. It is streamed: the size limit (`UPLOAD_MAX_BYTES`, default
/// 10 MiB) holds while it arrives, and the type is read from its bytes, never taken from the
/// client. The name is kept for display only (its last path component, without control
/// characters). An upload no prompt carries a day later is deleted.
#[utoipa::path(post, path = "/uploads", tag = "uploads",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = AttachmentView, description = "Stored"),
        (status = 415, description = "`unsupported_media_type`: not PNG, JPEG, WebP, HEIC/HEIF, PDF or UTF-8 text (SVG and HTML are refused), or a declared type the content contradicts", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: no `file` part or more than one part, an empty file, or an unusable name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the file store or the database cannot be reached; nothing was stored", body = Problem, content_type = "application/problem+json"),
    ))]
async fn upload_file(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    form: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, AppJson<AttachmentView>)> {
    let form = form.map_err(|rejection| {
        AppError::MalformedRequest(format!(
            "Send the file as multipart/form-data in a part named `file` ({}).",
            rejection.body_text()
        ))
    })?;
    let upload = service::receive(&state, who.user_id, form).await?;
    Ok((StatusCode::CREATED, AppJson(AttachmentView::from(&upload))))
}

/// One of your uploads, as its bytes with their type. Images are shown inline, anything else
/// is a download; the content is never sniffed by the browser nor run (`Content-Security-Policy:
/// sandbox`).
#[utoipa::path(get, path = "/uploads/{id}", tag = "uploads",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The file's bytes", content(
            (String = "image/png"), (String = "image/jpeg"), (String = "image/webp"),
            (String = "image/heic"), (String = "image/heif"), (String = "application/pdf"),
            (String = "text/plain"),
        )),
        (status = 404, description = "`not_found`: no such upload of yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the file store cannot be reached", body = Problem, content_type = "application/problem+json"),
    ))]
async fn download_file(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Response> {
    let (upload, bytes) = service::open(&state, who.user_id, UploadId(id)).await?;
    let content_type = if upload.mime_type == "text/plain" {
        "text/plain; charset=utf-8".to_owned()
    } else {
        upload.mime_type.clone()
    };
    let disposition = content_disposition(&upload);
    let headers = [
        (header::CONTENT_TYPE, header_value(&content_type)),
        (
            header::CONTENT_LENGTH,
            header_value(&upload.size.to_string()),
        ),
        (header::CONTENT_DISPOSITION, header_value(&disposition)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        ),
        // The bytes of an id never change; only their owner may read them.
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=86400, immutable"),
        ),
    ];
    Ok((headers, axum::body::Body::from_stream(bytes)).into_response())
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// `inline` for images, `attachment` otherwise, with the name as an ASCII fallback and in
/// full (RFC 6266, RFC 8187).
fn content_disposition(upload: &Upload) -> String {
    let kind = if upload.is_image() {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = upload
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = upload
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::model::UserId;

    #[test]
    fn the_disposition_carries_the_name_safely() {
        let upload = Upload {
            id: UploadId(Uuid::nil()),
            user_id: UserId(Uuid::nil()),
            name: "Résumé \"final\".pdf".into(),
            mime_type: "application/pdf".into(),
            size: 1,
            tokens: 1,
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        assert_eq!(
            content_disposition(&upload),
            "attachment; filename=\"R_sum_ _final_.pdf\"; \
             filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        let image = Upload {
            mime_type: "image/png".into(),
            name: "a.png".into(),
            ..upload
        };
        assert!(content_disposition(&image).starts_with("inline; "));
    }
}
