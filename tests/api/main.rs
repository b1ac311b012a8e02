//! pii-vault's integration tests: one binary, a real server on port 0,
//! real HTTP, on SQLite and (with DATABASE_URL) on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod auth;
mod consents;
mod customers;
mod helpers;
mod leaks;
