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
        (name = "billing", description = "Pro subscriptions through Stripe"),
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
    }
}

/// Documents the refusals every operation can meet, whatever its handler: 429 `rate_limited`
/// (the abuse limits: per client IP on the unauthenticated auth routes, per user on every
/// authenticated operation) and 503 `unavailable` (the database cannot be reached; every
/// operation that needs it).
pub fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
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
            let mut refusals = Vec::new();
            // The per-user limit comes with authentication; the public auth operations take
            // the per-IP limit (`PerIpLimit`). Everything but the operations routes sits
            // behind the database gate.
            let tagged = |tag: &str| operation.tags.iter().flatten().any(|t| t == tag);
            if authenticated || tagged("auth") {
                refusals.push(("429", RATE_LIMITED));
            }
            if !tagged("operations") {
                refusals.push(("503", UNAVAILABLE));
            }
            for (status, text) in refusals {
                match operation.responses.responses.get_mut(status) {
                    Some(RefOr::T(response)) if !response.description.contains(text) => {
                        response.description = format!("{}; or {text}", response.description);
                    }
                    Some(_) => {}
                    None => {
                        operation
                            .responses
                            .responses
                            .insert(status.to_owned(), RefOr::T(refusal(text)));
                    }
                }
            }
        }
    }
}

/// A problem+json response with a `Retry-After` header.
fn refusal(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, ResponseBuilder, Type,
    };
    ResponseBuilder::new()
        .description(description)
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        )
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
