//! Key management (capability `admin`): the key status, KEK rotation,
//! retiring an old KEK version, signing-key rotation. Every call, allowed or
//! refused, is an audit event without key material.

use crate::audit::{Action, Decision};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::parse_id;
use super::idempotency::{Keyed, Reply};
use crate::actor::Actor;
use crate::keys::ops::{KeyStatus, Retired, Rotated, SigningRotated};
use crate::keys::{self, Committer, KeyError};
use crate::policy::Capability;
use crate::state::AppState;
use crate::store::{KeyUse, Unit};

/// `?customer_id=` on the key status.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysQuery {
    /// Also show this customer's data key: `active` (with its KEK version)
    /// or `destroyed` (erased).
    pub customer_id: Option<String>,
}

fn actor(caller: &Actor) -> Actor {
    caller.clone()
}

/// The admin capability, or 403 with a `denied` audit event.
async fn require_admin(state: &AppState, caller: &Actor, action: Action) -> ApiResult<()> {
    if let Err(e) = caller.require(&state.policy, Capability::Admin) {
        let ev = caller
            .event(action, Decision::Denied)
            .reason("error", "capability_required");
        state.sequencer.commit(Unit::event(ev)).await?;
        return Err(e.audited());
    }
    Ok(())
}

fn api_error(e: &KeyError) -> ServiceError {
    match e {
        KeyError::UnknownVersion(_) => ServiceError::not_found("key_version_not_found"),
        KeyError::Active(_) => ServiceError::conflict("key_version_active"),
        KeyError::AlreadyRetired(_) => ServiceError::conflict("key_version_retired"),
        KeyError::InUse { .. } => ServiceError::conflict("key_version_in_use"),
        KeyError::RecentlyActive { .. } => ServiceError::conflict("key_version_recently_active"),
        KeyError::RootChanged => ServiceError::conflict("root_key_changed"),
        KeyError::Concurrent => ServiceError::conflict("conflict"),
        KeyError::SameRoot => ServiceError::invalid_request("the new root key is the current one"),
        KeyError::Crypto(c) => return ServiceError::internal(c),
        KeyError::Unavailable => return ServiceError::unavailable(),
    }
    .detail(e.to_string())
}

/// Maps a refused operation to its response, recording the refusal.
async fn refused(
    state: &AppState,
    caller: &Actor,
    action: Action,
    e: KeyError,
) -> ApiResult<Response> {
    let err = api_error(&e);
    if !err.kind.is_server_side() {
        let ev = caller
            .event(action, Decision::Denied)
            .reason("error", err.code);
        state.sequencer.commit(Unit::event(ev)).await?;
    }
    Err(err)
}

/// KEK versions (with the data keys each wraps and whether it can be
/// retired), rewrap progress, signing keys; with `customer_id`, that
/// customer's data key.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    params(KeysQuery),
    responses((status = 200, description = "Key versions, rewrap progress and signing keys (or one customer's data key)", body = KeyStatus),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn key_status(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<KeysQuery>,
) -> ApiResult<Json<KeyStatus>> {
    require_admin(&state, &caller, Action::KeysRead).await?;
    let customer = q.customer_id.as_deref().map(parse_id).transpose()?;
    let status = keys::status(
        &state.keys,
        state.store.as_ref(),
        state.clock.as_ref(),
        &state.settings,
        customer,
    )
    .await
    .map_err(|e| api_error(&e))?;
    let mut ev = caller.event(Action::KeysRead, Decision::Allowed);
    if let Some(id) = customer {
        ev = ev.customer(id);
    }
    let Some(status) = status else {
        state
            .sequencer
            .commit(Unit::event(ev.reason("error", "customer_not_found")))
            .await?;
        return Err(ServiceError::not_found("customer_not_found"));
    };
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(Json(status))
}

/// Adds a KEK version and makes it active. New data keys are wrapped with it
/// at once (other processes within `keyring_poll_secs`); existing ones are
/// rewrapped in the background.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys",
    responses((status = 201, description = "The new active KEK version; existing data keys are rewrapped in the background", body = Rotated),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate_kek(
    State(state): State<AppState>,
    caller: Actor,
    keyed: Keyed,
) -> ApiResult<Response> {
    require_admin(&state, &caller, Action::KeysRotate).await?;
    let committer = Committer::Sequencer(&state.sequencer);
    let reply = |r: &Rotated| Reply::json(StatusCode::CREATED, r);
    match keys::rotate(
        &state.keys,
        state.store.as_ref(),
        &committer,
        state.clock.as_ref(),
        &actor(&caller),
        &keyed.answer(&state, reply),
    )
    .await
    {
        Ok(r) => Ok(reply(&r)?.into_response()),
        Err(e) => refused(&state, &caller, Action::KeysRotate, e).await,
    }
}

/// Destroys an old KEK version's key material. Refused while it is active,
/// was active moments ago, or still wraps a data key or the signing key.
#[utoipa::path(post, path = "/v1/keys/{version}/retire", tag = "keys",
    params(("version" = i64, Path, description = "KEK version")),
    responses((status = 200, description = "The version's key material is destroyed", body = Retired),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn retire_kek(
    State(state): State<AppState>,
    caller: Actor,
    Path(version): Path<String>,
    keyed: Keyed,
) -> ApiResult<Response> {
    require_admin(&state, &caller, Action::KeysRetire).await?;
    let version: i64 = version.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        ServiceError::bad_request("invalid_id").detail("the version is not a positive integer")
    })?;
    let committer = Committer::Sequencer(&state.sequencer);
    let reply = |r: &Retired| Reply::json(StatusCode::OK, r);
    match keys::retire(
        Some(&state.keys),
        state.store.as_ref(),
        &committer,
        state.clock.as_ref(),
        &state.settings,
        version,
        &actor(&caller),
        &keyed.answer(&state, reply),
    )
    .await
    {
        Ok(r) => Ok(reply(&r)?.into_response()),
        Err(e) => refused(&state, &caller, Action::KeysRetire, e).await,
    }
}

/// `?revoke_previous=` on signing-key rotation.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RotateSigningQuery {
    /// `true`: refuse tokens signed by the previous key at once (suspected
    /// leak); `false` (default): they are accepted until they expire.
    pub revoke_previous: Option<String>,
}

/// A new Ed25519 key signs audit checkpoints from now on; the previous
/// public key stays published for older checkpoints. Access tokens have a
/// key of their own (`/v1/keys/token-signing/rotate`); `revoke_previous`
/// applies to that key only, `true` here is 400.
#[utoipa::path(post, path = "/v1/keys/signing/rotate", tag = "keys",
    operation_id = "rotate_signing_key",
    params(RotateSigningQuery),
    responses((status = 201, description = "The new checkpoint-signing key", body = SigningRotated),
        (status = 400, description = "`revoke_previous` is not `false`", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "Capability `admin` required", body = Problem),
        (status = 409, description = "A concurrent key operation won", body = Problem),
        (status = 503, description = "Try again shortly", body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate_signing_key(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<RotateSigningQuery>,
    keyed: Keyed,
) -> ApiResult<Response> {
    rotate(state, caller, q, KeyUse::Checkpoint, keyed).await
}

/// A new Ed25519 key signs access tokens from now on; the checkpoint key is
/// left alone. The previous public key stays in the JWKS, and its tokens
/// are accepted, until they expire, unless `revoke_previous=true`.
#[utoipa::path(post, path = "/v1/keys/token-signing/rotate", tag = "keys",
    operation_id = "rotate_token_signing_key",
    params(RotateSigningQuery),
    responses((status = 201, description = "The new token-signing key", body = SigningRotated),
        (status = 400, description = "`revoke_previous` is neither `true` nor `false`", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "Capability `admin` required", body = Problem),
        (status = 409, description = "A concurrent key operation won", body = Problem),
        (status = 503, description = "Try again shortly", body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate_token_signing_key(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<RotateSigningQuery>,
    keyed: Keyed,
) -> ApiResult<Response> {
    rotate(state, caller, q, KeyUse::Token, keyed).await
}

async fn rotate(
    state: AppState,
    caller: Actor,
    q: RotateSigningQuery,
    key_use: KeyUse,
    keyed: Keyed,
) -> ApiResult<Response> {
    let action = match key_use {
        KeyUse::Checkpoint => Action::KeysRotateSigning,
        KeyUse::Token => Action::KeysRotateTokenSigning,
    };
    require_admin(&state, &caller, action).await?;
    let revoke_previous = match q.revoke_previous.as_deref() {
        None | Some("false") => false,
        Some("true") if key_use == KeyUse::Token => true,
        Some("true") => {
            return Err(ServiceError::invalid_request(
                "revoke_previous applies to the token-signing key: \
                 POST /v1/keys/token-signing/rotate",
            )
            .field("revoke_previous"));
        }
        Some(_) => {
            return Err(
                ServiceError::invalid_request("revoke_previous must be true or false")
                    .field("revoke_previous"),
            );
        }
    };
    let committer = Committer::Sequencer(&state.sequencer);
    let reply = |r: &SigningRotated| Reply::json(StatusCode::CREATED, r);
    match keys::rotate_signing(
        key_use,
        &state.keys,
        state.store.as_ref(),
        &committer,
        state.clock.as_ref(),
        &state.settings,
        revoke_previous,
        &actor(&caller),
        &keyed.answer(&state, reply),
    )
    .await
    {
        Ok(r) => Ok(reply(&r)?.into_response()),
        Err(e) => refused(&state, &caller, action, e).await,
    }
}
