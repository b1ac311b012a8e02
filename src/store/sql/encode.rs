//! Rows written many at a time: encoded as one JSON array bound to one
//! parameter of a static statement (see [`DialectSql`](super::DialectSql)).
use crate::store::{Mutation, StoreError, ValuePurpose};

/// One audit event as a row of the `events` statement. `fields` and
/// `reasons` are the exact JSON texts stored in their columns.
#[derive(serde::Serialize)]
struct EventJson<'a> {
    seq: i64,
    at: i64,
    actor: &'a str,
    role: &'a str,
    action: &'a str,
    purpose: Option<&'a str>,
    customer_id: Option<&'a str>,
    fields: String,
    decision: &'a str,
    reasons: String,
    request_id: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

/// Audit events linked in a batch but not yet inserted.
#[derive(Default)]
pub(in crate::store) struct PendingEvents {
    json: String,
    count: usize,
}

impl PendingEvents {
    pub fn push(&mut self, e: &crate::audit::StoredEvent) -> Result<(), StoreError> {
        let row = EventJson {
            seq: e.seq,
            at: e.at,
            actor: &e.draft.actor,
            role: &e.draft.role,
            action: &e.draft.action,
            purpose: e.draft.purpose.as_deref(),
            customer_id: e.draft.customer_id.as_deref(),
            fields: serde_json::to_string(&e.draft.fields).map_err(json_error)?,
            decision: &e.draft.decision,
            reasons: serde_json::to_string(&e.draft.reasons).map_err(json_error)?,
            request_id: &e.draft.request_id,
            prev_hash: &e.prev_hash,
            hash: &e.hash,
        };
        self.json.push(if self.count == 0 { '[' } else { ',' });
        self.json
            .push_str(&serde_json::to_string(&row).map_err(json_error)?);
        self.count += 1;
        Ok(())
    }

    /// Links `drafts` on from `head` (moving it to the last of them) and
    /// queues them; returns them as stored.
    pub fn link(
        &mut self,
        drafts: &[crate::audit::EventDraft],
        head: &mut crate::store::ChainHead,
    ) -> Result<Vec<crate::audit::StoredEvent>, StoreError> {
        let mut stored = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let e = crate::audit::chain::link(head.seq, &head.hash, head.at, draft);
            self.push(&e)?;
            head.seq = e.seq;
            head.hash = hex::decode(&e.hash).unwrap_or_default();
            stored.push(e);
        }
        Ok(stored)
    }

    /// The JSON array of the pending events, leaving none pending; `None`
    /// when there are none.
    pub fn take(&mut self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        self.count = 0;
        let mut json = std::mem::take(&mut self.json);
        json.push(']');
        Some(json)
    }
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("cannot encode rows: {e}"))
}

#[derive(serde::Serialize)]
struct ValueJson<'a> {
    field: &'a str,
    ciphertext: String,
    collected_by: &'a str,
    channel: Option<&'a str>,
    notice_version: Option<&'a str>,
    at: i64,
}

#[derive(serde::Serialize)]
struct PurposeJson<'a> {
    field: &'a str,
    purpose: &'a str,
    collected_at: i64,
    expires_at: i64,
}

impl<'a> PurposeJson<'a> {
    fn of(field: &'a str, p: &'a ValuePurpose) -> Self {
        PurposeJson {
            field,
            purpose: &p.purpose,
            collected_at: p.collected_at,
            expires_at: p.expires_at,
        }
    }
}

#[derive(serde::Serialize)]
struct DigestJson<'a> {
    field: &'a str,
    digest: String,
}

/// The rows for the `values`, `purposes` and `digests` statements of some
/// `PutField`s of one customer (`None` where there is no row).
pub(in crate::store) struct FieldRows {
    pub values: String,
    pub purposes: Option<String>,
    pub digests: Option<String>,
}

pub(in crate::store) fn field_rows(puts: &[&Mutation]) -> Result<FieldRows, StoreError> {
    let mut values = Vec::with_capacity(puts.len());
    let mut purposes = Vec::new();
    let mut digests = Vec::new();
    for m in puts {
        let Mutation::PutField {
            field,
            ciphertext,
            collected_by,
            channel,
            notice_version,
            at,
            purposes: ps,
            blind_index,
            ..
        } = m
        else {
            continue;
        };
        values.push(ValueJson {
            field,
            ciphertext: hex::encode(ciphertext),
            collected_by,
            channel: channel.as_deref(),
            notice_version: notice_version.as_deref(),
            at: *at,
        });
        purposes.extend(ps.iter().map(|p| PurposeJson::of(field, p)));
        if let Some(d) = blind_index {
            digests.push(DigestJson {
                field,
                digest: hex::encode(d),
            });
        }
    }
    Ok(FieldRows {
        values: serde_json::to_string(&values).map_err(json_error)?,
        purposes: nonempty_json(&purposes)?,
        digests: nonempty_json(&digests)?,
    })
}

#[derive(serde::Serialize)]
struct RewrapJson {
    /// The customer id as 32 hex digits (SQLite stores its 16 bytes).
    id: String,
    from: i64,
    to: i64,
    dek: String,
}

/// The rows for the `rewraps` statement of some `RewrapDek`s.
pub(in crate::store) fn rewrap_rows(rewraps: &[&Mutation]) -> Result<String, StoreError> {
    let rows: Vec<RewrapJson> = rewraps
        .iter()
        .filter_map(|m| match m {
            Mutation::RewrapDek {
                customer_id,
                from_version,
                kek_version,
                wrapped_dek,
            } => Some(RewrapJson {
                id: customer_id.simple().to_string(),
                from: *from_version,
                to: *kek_version,
                dek: hex::encode(wrapped_dek),
            }),
            _ => None,
        })
        .collect();
    serde_json::to_string(&rows).map_err(json_error)
}

/// The rows for the `purposes` statement of one value.
pub(in crate::store) fn purpose_rows(
    field: &str,
    purposes: &[ValuePurpose],
) -> Result<Option<String>, StoreError> {
    let rows: Vec<PurposeJson> = purposes.iter().map(|p| PurposeJson::of(field, p)).collect();
    nonempty_json(&rows)
}

fn nonempty_json<T: serde::Serialize>(rows: &[T]) -> Result<Option<String>, StoreError> {
    if rows.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(rows).map(Some).map_err(json_error)
}
