//! `pii-vault bench-baseline` (hidden; started by `pii-vault bench` for its
//! `baseline` scenario): the plain read the vault's audited read is
//! measured against.
//!
//! A minimal axum + sqlx SQLite server such as any small application would
//! write: one table with the benchmark's customers and the same 5 fields in
//! plain text, `GET /v1/customers/{id}` answering them as JSON from one
//! `SELECT` by primary key. No authentication, no encryption, no audit.
//! The database settings are the vault's (WAL, `synchronous=FULL`), so the
//! difference the ratio shows is what the vault does per read, not how
//! SQLite is configured. Its pool keeps 8 connections (the vault reads on
//! cores + 1), so its figure stays comparable across releases.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use clap::Args;
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use super::Exit;
use super::bench::{FIELDS, baseline_id, customer_values};

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// The SQLite file to create (it must not exist).
    #[arg(long, value_name = "FILE")]
    database: PathBuf,
    /// Customers to hold (numbered as the benchmark numbers its own).
    #[arg(long)]
    customers: usize,
    /// Address to listen on; the chosen one is printed on stderr.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

/// Rows inserted per statement while seeding.
const SEED_CHUNK: usize = 5_000;

pub fn command(args: BaselineArgs) -> Exit {
    match super::block_on(serve(args)) {
        Ok(()) => Exit::Success,
        Err(e) => {
            eprintln!("pii-vault bench-baseline: {e:#}");
            Exit::Failure
        }
    }
}

async fn serve(args: BaselineArgs) -> anyhow::Result<()> {
    if args.database.exists() {
        anyhow::bail!("{} already exists", args.database.display());
    }
    let opts = SqliteConnectOptions::new()
        .filename(&args.database)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await
        .context("cannot open the baseline database")?;
    sqlx::query(
        "CREATE TABLE customers (id BLOB PRIMARY KEY, email TEXT NOT NULL, \
         phone TEXT NOT NULL, name TEXT NOT NULL, address TEXT NOT NULL, \
         support_note TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    seed(&pool, args.customers).await?;
    let app = axum::Router::new()
        .route("/v1/customers/{id}", axum::routing::get(read))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Inserts customers `0..n` in chunks (one statement per chunk).
async fn seed(pool: &SqlitePool, n: usize) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let mut start = 0;
    while start < n {
        let end = (start + SEED_CHUNK).min(n);
        let rows: Vec<serde_json::Value> = (start..end)
            .map(|i| {
                let mut row = serde_json::Map::new();
                row.insert(
                    "id".into(),
                    hex::encode(baseline_id(i as u64).as_bytes()).into(),
                );
                for (field, value) in customer_values(i as u64) {
                    row.insert(field.into(), value.into());
                }
                serde_json::Value::Object(row)
            })
            .collect();
        sqlx::query(
            "INSERT INTO customers (id, email, phone, name, address, support_note) \
             SELECT unhex(value->>'id'), value->>'email', value->>'phone', value->>'name', \
             value->>'address', value->>'support_note' FROM json_each($1)",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut *tx)
        .await?;
        start = end;
    }
    tx.commit().await?;
    Ok(())
}

#[derive(Serialize)]
struct Customer {
    id: Uuid,
    fields: std::collections::BTreeMap<&'static str, String>,
}

async fn read(
    State(pool): State<SqlitePool>,
    Path(id): Path<Uuid>,
) -> Result<Json<Customer>, StatusCode> {
    let row: Option<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT email, phone, name, address, support_note FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&pool)
    .await
    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let (email, phone, name, address, note) = row.ok_or(StatusCode::NOT_FOUND)?;
    let fields = FIELDS
        .iter()
        .copied()
        .zip([email, phone, name, address, note])
        .collect();
    Ok(Json(Customer { id, fields }))
}
