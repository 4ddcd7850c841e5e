//! The HTTP layer, above the domains: the router and its middleware ([`router`],
//! [`middleware`], [`observe`]), what handlers receive ([`state`]), extractors ([`extract`], [`caller`]),
//! errors as problem+json ([`problem`]), the OpenAPI document ([`openapi`]) and the server
//! with its time limits ([`server`]). Domains never import it, except their `routes.rs`.

pub(crate) mod caller;
pub(crate) mod extract;
pub(crate) mod middleware;
pub(crate) mod observe;
pub(crate) mod openapi;
pub(crate) mod problem;
pub mod router;
pub mod server;
pub(crate) mod state;
