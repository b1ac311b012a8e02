//! `Idempotency-Key` on POST: a retry with the same key and body returns the
//! first response and has no second effect. The stored response is written
//! in the same unit as the effect, so either both exist or neither does.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{ApiResult, ServiceError};
use crate::actor::Actor;
use crate::error::ErrorKind;
use crate::state::AppState;
use crate::store::Mutation;

pub enum Begin {
    /// The key was seen with the same request: here is the first response.
    Replay(Response),
    Proceed(Idem),
}

pub struct Idem {
    key: Option<(String, String, Vec<u8>)>,
}

/// Looks up the caller's `Idempotency-Key`, if any.
pub async fn begin<T: Serialize>(
    state: &AppState,
    caller: &Actor,
    headers: &HeaderMap,
    route: &str,
    input: &T,
) -> ApiResult<Begin> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(Begin::Proceed(Idem { key: None }));
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ServiceError::invalid_request("Idempotency-Key must be 1–255 visible ASCII characters")
        })?
        .to_owned();
    let mut bytes = route.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend(serde_json::to_vec(input).map_err(ServiceError::internal)?);
    // Keyed: a plain hash of a body that holds personal values would let
    // anyone with the database file confirm a guessed value.
    let hash = state
        .keys
        .index
        .keyed_digest("idempotency", &bytes)
        .to_vec();
    let idem = Idem {
        key: Some((caller.id.clone(), key, hash)),
    };
    match stored(state, &idem).await? {
        Some(resp) => Ok(Begin::Replay(resp)),
        None => Ok(Begin::Proceed(idem)),
    }
}

impl Idem {
    /// The mutation that stores this response under the key; `customer`:
    /// the customer the request created (an erasure deletes the record).
    pub fn record(
        &self,
        state: &AppState,
        status: StatusCode,
        body: &str,
        customer: Option<uuid::Uuid>,
        at: i64,
    ) -> Option<Mutation> {
        let (principal, key, hash) = self.key.as_ref()?;
        Some(Mutation::SaveIdempotency {
            principal: principal.clone(),
            key: key.clone(),
            request_hash: hash.clone(),
            status: i64::from(status.as_u16()),
            body: body.to_owned(),
            customer_id: customer,
            expired_before: expired_before(state, at),
            at,
        })
    }
}

/// After a conflict: a concurrent request with the same key may have won.
pub async fn replay_after_conflict(state: &AppState, idem: &Idem) -> ApiResult<Option<Response>> {
    stored(state, idem).await
}

async fn stored(state: &AppState, idem: &Idem) -> ApiResult<Option<Response>> {
    let Some((principal, key, hash)) = &idem.key else {
        return Ok(None);
    };
    let Some(row) = state.store.idempotency(principal, key).await? else {
        return Ok(None);
    };
    if row.created_at < expired_before(state, state.clock.now_micros()) {
        // Past `idempotency_ttl_hours`: the key is free again.
        return Ok(None);
    }
    if &row.request_hash != hash {
        return Err(
            ServiceError::new(ErrorKind::Unprocessable, "idempotency_key_reused")
                .detail("this Idempotency-Key was used with a different request"),
        );
    }
    let status = u16::try_from(row.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = (status, row.body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(resp))
}

/// Records created before this time (µs) have expired.
pub fn expired_before(state: &AppState, now: i64) -> i64 {
    now.saturating_sub(
        i64::from(state.settings.idempotency_ttl_hours).saturating_mul(3_600_000_000),
    )
}
