//! Authentication's process-local helpers: the cache of verified callers
//! and the per-principal rate limiter. The edges (`src/http/`) use them to
//! turn a credential into an [`Actor`](crate::actor::Actor).

pub mod cache;
pub mod rate_limit;
