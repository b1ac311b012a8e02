//! pii-vault's integration tests: one binary, a real server on port 0,
//! real HTTP, on SQLite and (with DATABASE_URL) on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod audit;
mod audit_trail;
mod auth;
mod browser;
mod cli;
mod consents;
mod console;
mod copies;
mod customers;
mod erasure;
mod export;
mod faults;
mod filers;
mod floods;
mod helpers;
mod http_standards;
mod idempotency;
mod keys;
mod layering;
mod leak_scan;
mod leaks;
mod limits;
mod matrix;
mod oauth;
mod oidc;
mod openapi;
mod operations;
mod pages;
mod requests;
mod retention;
mod smtp;
mod special_categories;
mod tamper;
