//! The OpenAPI document: its header, the bearer scheme, and the refusals every operation can
//! meet, documented once.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::problem::PROBLEM_JSON;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gemchat",
        description = "Gemini-style AI chat: OTP sign-in, chatrooms, streamed AI replies, Pro \
                       subscriptions. Errors are RFC 9457 problem details with a stable `code`. \
                       A path written with a trailing slash (`/chatroom/`) answers 308 Permanent \
                       Redirect to the same path without it (the method and body are kept). \
                       Text fields never accept the NUL character (422 `validation_failed`). \
                       A request body must arrive within `HTTP_BODY_TIMEOUT` seconds of its \
                       headers (408 `request_timeout`)."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, one-time codes, passwords, sessions"),
        (name = "user", description = "The caller's account"),
        (name = "chatrooms", description = "Chatrooms, messages and AI replies"),
        (name = "uploads", description = "Files (images, PDFs, text) for prompts"),
        (name = "billing", description = "Pro subscriptions through Stripe"),
        (name = "admin", description = "Administration, for users holding the admin role"),
        (name = "operations", description = "Health, readiness, documentation"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A token of a user holding the admin role (granted with `gemchat admin \
                         grant <mobile>`); any other caller gets 403 `forbidden`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Documents the refusals every operation can meet, whatever its handler, once for all
/// (a route's own `responses` list only what is particular to it):
/// - 400 `malformed_request`, 413 `payload_too_large` and 408 `request_timeout` where there is
///   a request body; 400 also where there is a path parameter (not a UUID);
/// - 401 `unauthorized` on every authenticated operation;
/// - 429 `rate_limited`: the abuse limits, per user on every authenticated operation and per
///   client IP on the public auth operations (the handlers that take `PerIpLimit`);
/// - 503 `unavailable` on every operation behind the database gate (all but `operations`).
pub(crate) fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::path::ParameterIn;
    const MALFORMED: &str = "`malformed_request`: the body is not JSON of the documented shape \
                             (or another `Content-Type`), or a path parameter is not a UUID";
    const TOO_LARGE: &str = "`payload_too_large`: the body is over the size limit";
    const TIMEOUT: &str = "`request_timeout`: the body did not arrive within `HTTP_BODY_TIMEOUT`";
    const UNAUTHORIZED: &str =
        "`unauthorized`: the bearer token is missing, malformed, expired or revoked";
    const RATE_LIMITED: &str = "`rate_limited`: too many requests from this client or user this minute, with `Retry-After`";
    const UNAVAILABLE: &str = "`unavailable`: the database cannot be reached; try again after \
                               `Retry-After` seconds";
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = operation.request_body.is_some();
            let has_path_parameter = operation
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
            let tagged = |tag: &str| operation.tags.iter().flatten().any(|t| t == tag);
            let mut refusals = Vec::new();
            if has_body || has_path_parameter {
                refusals.push(("400", MALFORMED, false));
            }
            if has_body {
                refusals.push(("413", TOO_LARGE, false));
                refusals.push(("408", TIMEOUT, false));
            }
            if authenticated {
                refusals.push(("401", UNAUTHORIZED, false));
            }
            if authenticated || tagged("auth") {
                refusals.push(("429", RATE_LIMITED, true));
            }
            if !tagged("operations") {
                refusals.push(("503", UNAVAILABLE, true));
            }
            for (status, text, retry_after) in refusals {
                match operation.responses.responses.get_mut(status) {
                    Some(RefOr::T(response)) if !response.description.contains(text) => {
                        response.description = format!("{}; or {text}", response.description);
                    }
                    Some(_) => {}
                    None => {
                        operation
                            .responses
                            .responses
                            .insert(status.to_owned(), RefOr::T(refusal(text, retry_after)));
                    }
                }
            }
        }
    }
}

/// A problem+json response, with a `Retry-After` header where the refusal passes.
fn refusal(description: &str, retry_after: bool) -> utoipa::openapi::Response {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, ResponseBuilder, Type,
    };
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    response.build()
}
