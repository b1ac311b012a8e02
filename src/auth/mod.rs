//! Authentication's process-local helpers: the cache of verified callers,
//! the per-principal and per-source rate limiters, where a call comes from
//! (`client_addr`), and the one limiter of password work (`work`). The
//! edges (`src/http/`) use them to turn a credential into an
//! [`Actor`](crate::actor::Actor); the services use `work` for every
//! argon2 hash on a request path. `session` checks users' passwords and
//! keeps the staff console's sessions. `oidc` verifies the access tokens of
//! external identity providers.

pub mod cache;
pub mod client_addr;
pub mod oidc;
pub mod rate_limit;
pub mod session;
pub mod work;
