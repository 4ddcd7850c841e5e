//! The HTTP layer, above the domains: the router and its middleware ([`router`],
//! [`middleware`]), what handlers receive ([`state`]), extractors ([`extract`], [`caller`]),
//! errors as problem+json ([`problem`]), the OpenAPI document ([`openapi`]) and the server
//! with its time limits ([`server`]). Domains never import it, except their `routes.rs`.

pub mod caller;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod router;
pub mod server;
pub mod state;
