//! The body of both [`Store`](super::Store) implementations. Every statement
//! here is valid in SQLite and in PostgreSQL; each backend type provides
//! `begin_write()` and `LOCK_HEAD` (what differs between the dialects).
//! All SQL is static text with bound parameters.

/// The statements whose text differs between the dialects.
///
/// `record` reads a whole customer (values with purposes, consent events,
/// objections) as one row, the nested parts as JSON arrays: one statement
/// and one row per read.
///
/// The others insert many rows at once. Rows travel as one JSON array
/// bound to one parameter (static SQL; `json_each` in SQLite,
/// `jsonb_array_elements` in PostgreSQL), so a batch of audit events or the
/// values of a new customer cost one statement instead of one per row: for
/// SQLite every statement is a hand-off to the connection's worker thread,
/// for PostgreSQL a network round trip. Bytes travel as hex.
pub(super) struct DialectSql {
    /// `$1`: customer id; one [`RecordRow`] or none.
    pub record: &'static str,
    /// `$1`: array of [`EventJson`].
    pub events: &'static str,
    /// `$1`: customer id; `$2`: array of [`ValueJson`].
    pub values: &'static str,
    /// `$1`: customer id; `$2`: array of [`PurposeJson`].
    pub purposes: &'static str,
    /// `$1`: customer id; `$2`: array of [`DigestJson`].
    pub digests: &'static str,
    /// `$1`: array of [`RewrapJson`]; a row is changed only while still
    /// wrapped by its `from` version (as [`Mutation::RewrapDek`](super::Mutation::RewrapDek)).
    pub rewraps: &'static str,
}

pub(super) const SQLITE_SQL: DialectSql = DialectSql {
    record: "SELECT c.id, c.external_id, c.created_at, c.kek_version, c.wrapped_dek, \
         c.restricted, c.opted_out_sale, c.limit_sensitive, c.erased_at, \
         (SELECT json_group_array(json_object('field', v.field, \
             'ciphertext', hex(v.ciphertext), 'collected_by', v.collected_by, \
             'channel', v.channel, 'notice_version', v.notice_version, \
             'collected_at', v.collected_at, \
             'purposes', json((SELECT json_group_array(json_object('purpose', p.purpose, \
                 'collected_at', p.collected_at, 'expires_at', p.expires_at) \
                 ORDER BY p.purpose) \
                 FROM value_purposes p \
                 WHERE p.customer_id = v.customer_id AND p.field = v.field))) \
             ORDER BY v.field) \
          FROM field_values v WHERE v.customer_id = c.id), \
         (SELECT json_group_array(json_object('id', hex(e.id), 'purpose', e.purpose, \
             'action', e.action, 'notice_version', e.notice_version, \
             'notice_text_sha256', e.notice_text_sha256, 'language', e.language, \
             'jurisdiction', e.jurisdiction, 'channel', e.channel, \
             'captured_by', e.captured_by, 'at', e.at) ORDER BY e.at, e.id) \
          FROM consent_events e WHERE e.customer_id = c.id), \
         (SELECT json_group_array(o.purpose ORDER BY o.purpose) \
          FROM objections o WHERE o.customer_id = c.id) \
         FROM customers c WHERE c.id = $1",
    events: "INSERT INTO audit_events (seq, at, actor, role, action, purpose, customer_id, \
         fields, decision, reasons, request_id, prev_hash, hash) \
         SELECT value->>'seq', value->>'at', value->>'actor', value->>'role', value->>'action', \
         value->>'purpose', value->>'customer_id', value->>'fields', value->>'decision', \
         value->>'reasons', value->>'request_id', unhex(value->>'prev_hash'), \
         unhex(value->>'hash') FROM json_each($1)",
    values: "INSERT INTO field_values (customer_id, field, ciphertext, collected_by, channel, \
         notice_version, collected_at) \
         SELECT $1, value->>'field', unhex(value->>'ciphertext'), value->>'collected_by', \
         value->>'channel', value->>'notice_version', value->>'at' FROM json_each($2)",
    purposes: "INSERT INTO value_purposes (customer_id, field, purpose, collected_at, expires_at) \
         SELECT $1, value->>'field', value->>'purpose', value->>'collected_at', \
         value->>'expires_at' FROM json_each($2)",
    digests: "INSERT INTO blind_index (field, digest, customer_id) \
         SELECT value->>'field', unhex(value->>'digest'), $1 FROM json_each($2)",
    rewraps: "UPDATE customers SET kek_version = j.value->>'to', \
         wrapped_dek = unhex(j.value->>'dek') \
         FROM json_each($1) AS j \
         WHERE customers.id = unhex(j.value->>'id') \
         AND customers.kek_version = j.value->>'from' AND customers.wrapped_dek IS NOT NULL",
};

pub(super) const POSTGRES_SQL: DialectSql = DialectSql {
    record: "SELECT c.id, c.external_id, c.created_at, c.kek_version, c.wrapped_dek, \
         c.restricted, c.opted_out_sale, c.limit_sensitive, c.erased_at, \
         (SELECT json_agg(json_build_object('field', v.field, \
             'ciphertext', encode(v.ciphertext, 'hex'), 'collected_by', v.collected_by, \
             'channel', v.channel, 'notice_version', v.notice_version, \
             'collected_at', v.collected_at, \
             'purposes', (SELECT json_agg(json_build_object('purpose', p.purpose, \
                 'collected_at', p.collected_at, 'expires_at', p.expires_at) \
                 ORDER BY p.purpose) \
                 FROM value_purposes p \
                 WHERE p.customer_id = v.customer_id AND p.field = v.field)) \
             ORDER BY v.field)::text \
          FROM field_values v WHERE v.customer_id = c.id), \
         (SELECT json_agg(json_build_object('id', e.id, 'purpose', e.purpose, \
             'action', e.action, 'notice_version', e.notice_version, \
             'notice_text_sha256', e.notice_text_sha256, 'language', e.language, \
             'jurisdiction', e.jurisdiction, 'channel', e.channel, \
             'captured_by', e.captured_by, 'at', e.at) ORDER BY e.at, e.id)::text \
          FROM consent_events e WHERE e.customer_id = c.id), \
         (SELECT json_agg(o.purpose ORDER BY o.purpose)::text \
          FROM objections o WHERE o.customer_id = c.id) \
         FROM customers c WHERE c.id = $1",
    events: "INSERT INTO audit_events (seq, at, actor, role, action, purpose, customer_id, \
         fields, decision, reasons, request_id, prev_hash, hash) \
         SELECT (e->>'seq')::bigint, (e->>'at')::bigint, e->>'actor', e->>'role', e->>'action', \
         e->>'purpose', e->>'customer_id', e->>'fields', e->>'decision', e->>'reasons', \
         e->>'request_id', decode(e->>'prev_hash', 'hex'), decode(e->>'hash', 'hex') \
         FROM jsonb_array_elements($1::jsonb) AS e",
    values: "INSERT INTO field_values (customer_id, field, ciphertext, collected_by, channel, \
         notice_version, collected_at) \
         SELECT $1, e->>'field', decode(e->>'ciphertext', 'hex'), e->>'collected_by', \
         e->>'channel', e->>'notice_version', (e->>'at')::bigint \
         FROM jsonb_array_elements($2::jsonb) AS e",
    purposes: "INSERT INTO value_purposes (customer_id, field, purpose, collected_at, expires_at) \
         SELECT $1, e->>'field', e->>'purpose', (e->>'collected_at')::bigint, \
         (e->>'expires_at')::bigint FROM jsonb_array_elements($2::jsonb) AS e",
    digests: "INSERT INTO blind_index (field, digest, customer_id) \
         SELECT e->>'field', decode(e->>'digest', 'hex'), $1 \
         FROM jsonb_array_elements($2::jsonb) AS e",
    rewraps: "UPDATE customers AS c SET kek_version = (e->>'to')::bigint, \
         wrapped_dek = decode(e->>'dek', 'hex') \
         FROM jsonb_array_elements($1::jsonb) AS e \
         WHERE c.id = (e->>'id')::uuid \
         AND c.kek_version = (e->>'from')::bigint AND c.wrapped_dek IS NOT NULL",
};

/// One audit event as a row of [`DialectSql::events`]. `fields` and `reasons`
/// are the exact JSON texts stored in their columns.
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
pub(super) struct PendingEvents {
    json: String,
    count: usize,
}

impl PendingEvents {
    pub fn push(&mut self, e: &crate::audit::StoredEvent) -> Result<(), super::StoreError> {
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

fn json_error(e: serde_json::Error) -> super::StoreError {
    super::StoreError::Database(format!("cannot encode rows: {e}"))
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
    fn of(field: &'a str, p: &'a super::ValuePurpose) -> Self {
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

/// The rows for [`DialectSql::values`], [`DialectSql::purposes`] and
/// [`DialectSql::digests`] of some `PutField`s of one customer (`None` where
/// there is no row).
pub(super) struct FieldRows {
    pub values: String,
    pub purposes: Option<String>,
    pub digests: Option<String>,
}

pub(super) fn field_rows(puts: &[&super::Mutation]) -> Result<FieldRows, super::StoreError> {
    let mut values = Vec::with_capacity(puts.len());
    let mut purposes = Vec::new();
    let mut digests = Vec::new();
    for m in puts {
        let super::Mutation::PutField {
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

/// The rows for [`DialectSql::rewraps`] of some `RewrapDek`s.
pub(super) fn rewrap_rows(rewraps: &[&super::Mutation]) -> Result<String, super::StoreError> {
    let rows: Vec<RewrapJson> = rewraps
        .iter()
        .filter_map(|m| match m {
            super::Mutation::RewrapDek {
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

/// The rows for [`DialectSql::purposes`] of one value.
pub(super) fn purpose_rows(
    field: &str,
    purposes: &[super::ValuePurpose],
) -> Result<Option<String>, super::StoreError> {
    let rows: Vec<PurposeJson> = purposes.iter().map(|p| PurposeJson::of(field, p)).collect();
    nonempty_json(&rows)
}

fn nonempty_json<T: serde::Serialize>(rows: &[T]) -> Result<Option<String>, super::StoreError> {
    if rows.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(rows).map(Some).map_err(json_error)
}

pub(super) const UPDATE_HEAD: &str =
    "UPDATE audit_head SET seq = $1, hash = $2, at = $3 WHERE id = 1";
pub(super) const AUDIT_QUERY: &str = "SELECT seq, at, actor, role, action, purpose, customer_id, \
     fields, decision, reasons, request_id, prev_hash, hash FROM audit_events \
     WHERE seq > $1 \
     AND ($2 IS NULL OR customer_id = $2) \
     AND ($3 IS NULL OR actor = $3) \
     AND ($4 IS NULL OR action = $4) \
     AND ($5 IS NULL OR purpose = $5) \
     AND ($6 IS NULL OR decision = $6) \
     AND ($7 IS NULL OR at >= $7) \
     AND ($8 IS NULL OR at < $8) \
     ORDER BY seq LIMIT $9";

pub(super) type EventRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
);

pub(super) fn event_from_row(r: EventRow) -> crate::audit::StoredEvent {
    let (seq, at, actor, role, action, purpose, customer_id, fields, decision, reasons, rid, p, h) =
        r;
    crate::audit::StoredEvent {
        seq,
        at,
        draft: crate::audit::EventDraft {
            actor,
            role,
            action,
            purpose,
            customer_id,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            decision,
            reasons: serde_json::from_str(&reasons).unwrap_or_default(),
            request_id: rid,
        },
        prev_hash: hex::encode(p),
        hash: hex::encode(h),
    }
}

pub(super) type CheckpointTuple = (i64, Vec<u8>, i64, String, Vec<u8>);

pub(super) fn checkpoint_from_row(r: CheckpointTuple) -> super::CheckpointRow {
    let (seq, hash, at, kid, signature) = r;
    super::CheckpointRow {
        seq,
        hash,
        at,
        kid,
        signature,
    }
}

/// What [`DialectSql::record`] returns: the customer's columns, then its
/// values (with their purposes), consent events and objections as JSON
/// arrays (`NULL` or `[]` when there are none).
pub(super) type RecordRow = (
    uuid::Uuid,
    Option<String>,
    i64,
    Option<i64>,
    Option<Vec<u8>>,
    bool,
    bool,
    bool,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[derive(serde::Deserialize)]
struct FieldOut {
    field: String,
    /// Hex (either case).
    ciphertext: String,
    collected_by: String,
    channel: Option<String>,
    notice_version: Option<String>,
    collected_at: i64,
    purposes: Option<Vec<PurposeOut>>,
}

#[derive(serde::Deserialize)]
struct PurposeOut {
    purpose: String,
    collected_at: i64,
    expires_at: i64,
}

#[derive(serde::Deserialize)]
struct ConsentOut {
    /// Hex of the 16 bytes (SQLite) or the hyphenated form (PostgreSQL).
    id: String,
    purpose: String,
    action: String,
    notice_version: String,
    notice_text_sha256: String,
    language: String,
    jurisdiction: String,
    channel: String,
    captured_by: String,
    at: i64,
}

fn unreadable(what: &str) -> super::StoreError {
    super::StoreError::Database(format!("stored customer record unreadable ({what})"))
}

fn json_array<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    what: &str,
) -> Result<Vec<T>, super::StoreError> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str::<Option<Vec<T>>>(&t)
            .map(Option::unwrap_or_default)
            .map_err(|_| unreadable(what)),
    }
}

/// Builds the record from the one row of [`DialectSql::record`].
pub(super) fn record_from_row(r: RecordRow) -> Result<super::CustomerRecord, super::StoreError> {
    let (
        id,
        external_id,
        created_at,
        kek_version,
        wrapped_dek,
        restricted,
        opted_out_sale,
        limit_sensitive,
        erased_at,
        fields,
        consents,
        objections,
    ) = r;
    let fields = json_array::<FieldOut>(fields, "values")?
        .into_iter()
        .map(|f| {
            Ok(super::FieldRow {
                ciphertext: hex::decode(&f.ciphertext).map_err(|_| unreadable("ciphertext"))?,
                field: f.field,
                collected_by: f.collected_by,
                channel: f.channel,
                notice_version: f.notice_version,
                collected_at: f.collected_at,
                purposes: f
                    .purposes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| super::ValuePurpose {
                        purpose: p.purpose,
                        collected_at: p.collected_at,
                        expires_at: p.expires_at,
                    })
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>, super::StoreError>>()?;
    let consents = json_array::<ConsentOut>(consents, "consents")?
        .into_iter()
        .map(|c| {
            Ok(super::ConsentEvent {
                id: uuid::Uuid::try_parse(&c.id).map_err(|_| unreadable("consent id"))?,
                customer_id: id,
                purpose: c.purpose,
                action: c.action,
                notice_version: c.notice_version,
                notice_text_sha256: c.notice_text_sha256,
                language: c.language,
                jurisdiction: c.jurisdiction,
                channel: c.channel,
                captured_by: c.captured_by,
                at: c.at,
            })
        })
        .collect::<Result<Vec<_>, super::StoreError>>()?;
    let objections = json_array::<String>(objections, "objections")?;
    Ok(super::CustomerRecord {
        customer: super::CustomerRow {
            id,
            external_id,
            created_at,
            kek_version,
            wrapped_dek,
            restricted,
            opted_out_sale,
            limit_sensitive,
            erased_at,
        },
        fields,
        consents,
        objections,
    })
}

pub(super) const ERASURE_JOB: &str = "SELECT customer_id, receipt_id, request_id, actor, role, \
     status, step, force_full, retained, started_at, updated_at, finished_at \
     FROM erasure_jobs WHERE customer_id = $1";

pub(super) type ErasureJobTuple = (
    uuid::Uuid,
    uuid::Uuid,
    Option<String>,
    String,
    String,
    String,
    i64,
    bool,
    String,
    i64,
    i64,
    Option<i64>,
);

pub(super) fn erasure_job_from_row(r: ErasureJobTuple) -> super::ErasureJobRow {
    let (
        customer_id,
        receipt_id,
        request_id,
        actor,
        role,
        status,
        step,
        force_full,
        retained,
        s,
        u,
        f,
    ) = r;
    super::ErasureJobRow {
        customer_id,
        receipt_id,
        request_id,
        actor,
        role,
        status,
        step,
        force_full,
        retained,
        started_at: s,
        updated_at: u,
        finished_at: f,
    }
}

pub(super) const HOLD_BY_ID: &str = "SELECT id, customer_id, fields, reason, basis, purpose, \
     review_at, created_by, created_at, released_at FROM legal_holds WHERE id = $1";
pub(super) const HOLDS_OF_CUSTOMER: &str = "SELECT id, customer_id, fields, reason, basis, \
     purpose, review_at, created_by, created_at, released_at FROM legal_holds \
     WHERE customer_id = $1 ORDER BY review_at, id";
pub(super) const HOLDS_ACTIVE: &str = "SELECT id, customer_id, fields, reason, basis, purpose, \
     review_at, created_by, created_at, released_at FROM legal_holds \
     WHERE released_at IS NULL ORDER BY review_at, id";

pub(super) type HoldTuple = (
    uuid::Uuid,
    uuid::Uuid,
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    i64,
    Option<i64>,
);

pub(super) fn hold_from_row(r: HoldTuple) -> super::LegalHoldRow {
    let (id, customer_id, fields, reason, basis, purpose, review_at, by, at, released_at) = r;
    super::LegalHoldRow {
        id,
        customer_id,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        reason,
        basis,
        purpose,
        review_at,
        created_by: by,
        created_at: at,
        released_at,
    }
}

/// Generates `impl Store for $store` where `$store` has a `pool: Pool<$db>`,
/// an inherent `async fn begin_write(&self)`, a `LOCK_HEAD` constant and a
/// `SQL` constant (its dialect's [`DialectSql`]).
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            #[tracing::instrument(level = "debug", skip_all, fields(units = units.len()))]
            async fn commit_batch(
                &self,
                units: &[$crate::store::Unit],
                at: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::UnitOutcome>> {
                use $crate::store::StoreError;
                let mut tx = self.begin_write().await?;
                let (head_seq, head_hash, head_at): (i64, Vec<u8>, i64) =
                    sqlx::query_as(Self::LOCK_HEAD).fetch_one(&mut *tx).await?;
                let at = at.max(head_at);
                let (mut seq, mut hash) = (head_seq, head_hash);
                let mut outcomes = Vec::with_capacity(units.len());
                // Events are linked as their units succeed and inserted
                // together (one statement) before the head moves.
                let mut pending = $crate::store::sql::PendingEvents::default();
                for unit in units {
                    if unit.mutations.iter().any($crate::store::Mutation::reads_audit) {
                        insert_events(&mut tx, &mut pending).await?;
                    }
                    // Units with changes get a savepoint so that one refused
                    // change does not undo the rest of the batch.
                    let guarded = !unit.mutations.is_empty();
                    if guarded {
                        sqlx::query("SAVEPOINT unit").execute(&mut *tx).await?;
                    }
                    // Customers this unit creates have no earlier values to replace.
                    let fresh: Vec<uuid::Uuid> = unit
                        .mutations
                        .iter()
                        .filter_map(|m| match m {
                            $crate::store::Mutation::InsertCustomer { id, .. } => Some(*id),
                            _ => None,
                        })
                        .collect();
                    let mut result: Result<(), StoreError> = Ok(());
                    let mut rest = unit.mutations.as_slice();
                    while !rest.is_empty() {
                        // Consecutive values of one customer go in together,
                        // and so do consecutive data-key rewraps.
                        let puts = $crate::store::Mutation::put_field_run(rest);
                        let rewraps = $crate::store::Mutation::rewrap_run(rest);
                        result = if !puts.is_empty() {
                            put_fields(&mut tx, &puts, &fresh).await
                        } else if !rewraps.is_empty() {
                            rewrap_deks(&mut tx, &rewraps).await
                        } else {
                            apply(&mut tx, &rest[0], &fresh).await
                        };
                        rest = &rest[puts.len().max(rewraps.len()).max(1)..];
                        if result.is_err() {
                            break;
                        }
                    }
                    match result {
                        Ok(()) => {
                            let mut stored = Vec::with_capacity(unit.events.len());
                            for draft in &unit.events {
                                let e = $crate::audit::chain::link(seq, &hash, at, draft);
                                pending.push(&e)?;
                                seq = e.seq;
                                hash = hex::decode(&e.hash).unwrap_or_default();
                                stored.push(e);
                            }
                            if guarded {
                                sqlx::query("RELEASE SAVEPOINT unit").execute(&mut *tx).await?;
                            }
                            outcomes.push(Ok(stored));
                        }
                        Err(e @ (StoreError::Conflict(_) | StoreError::NotFound)) if guarded => {
                            sqlx::query("ROLLBACK TO SAVEPOINT unit").execute(&mut *tx).await?;
                            sqlx::query("RELEASE SAVEPOINT unit").execute(&mut *tx).await?;
                            outcomes.push(Err(e));
                        }
                        Err(e) => return Err(e),
                    }
                }
                insert_events(&mut tx, &mut pending).await?;
                if seq != head_seq {
                    sqlx::query($crate::store::sql::UPDATE_HEAD)
                        .bind(seq)
                        .bind(&hash)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(outcomes)
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn get_meta(&self, name: &str) -> $crate::store::StoreResult<Option<Vec<u8>>> {
                Ok(sqlx::query_scalar("SELECT value FROM vault_meta WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn keks(&self) -> $crate::store::StoreResult<Vec<$crate::store::KekRow>> {
                let rows: Vec<(i64, Option<Vec<u8>>, bool, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT version, wrapped, active, created_at, retired_at FROM keyring ORDER BY version",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(version, wrapped, active, created_at, retired_at)| {
                        $crate::store::KekRow { version, wrapped, active, created_at, retired_at }
                    })
                    .collect())
            }

            async fn signing_keys(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyRow>> {
                let rows: Vec<(String, i64, Vec<u8>, Vec<u8>, bool, i64)> = sqlx::query_as(
                    "SELECT kid, kek_version, sealed, public_key, active, created_at \
                     FROM signing_keys ORDER BY created_at",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(kid, kek_version, sealed, public_key, active, created_at)| {
                        $crate::store::SigningKeyRow {
                            kid,
                            kek_version,
                            sealed,
                            public_key,
                            active,
                            created_at,
                        }
                    })
                    .collect())
            }

            async fn kek_states(&self) -> $crate::store::StoreResult<Vec<$crate::store::KekState>> {
                type Row = (i64, Option<Vec<u8>>, bool, i64, Option<i64>, Option<i64>, Option<i64>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT version, wrapped, active, created_at, deactivated_at, retired_at, rewrap_total \
                     FROM keyring ORDER BY version",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(version, wrapped, active, created_at, deactivated_at, retired_at, rewrap_total)| {
                        $crate::store::KekState {
                            version,
                            has_material: wrapped.is_some(),
                            active,
                            created_at,
                            deactivated_at,
                            retired_at,
                            rewrap_total,
                        }
                    })
                    .collect())
            }

            async fn signing_key_states(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyState>> {
                type Row = (String, i64, Vec<u8>, Vec<u8>, bool, i64, Option<i64>, bool);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT kid, kek_version, sealed, public_key, active, created_at, retired_at, \
                     tokens_revoked FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(kid, kek_version, sealed, public_key, active, created_at, retired_at, tokens_revoked)| {
                        $crate::store::SigningKeyState {
                            row: $crate::store::SigningKeyRow {
                                kid,
                                kek_version,
                                sealed,
                                public_key,
                                active,
                                created_at,
                            },
                            retired_at,
                            tokens_revoked,
                        }
                    })
                    .collect())
            }

            async fn kek_usage(&self) -> $crate::store::StoreResult<Vec<(i64, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT kek_version, COUNT(*) FROM customers \
                     WHERE wrapped_dek IS NOT NULL AND kek_version IS NOT NULL \
                     GROUP BY kek_version ORDER BY kek_version",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn dek_batch(
                &self,
                kek_version: i64,
                after: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, Vec<u8>)>> {
                Ok(sqlx::query_as(
                    "SELECT id, wrapped_dek FROM customers \
                     WHERE kek_version = $1 AND wrapped_dek IS NOT NULL AND id > $2 \
                     ORDER BY id LIMIT $3",
                )
                .bind(kek_version)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn customer_key(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<(Option<i64>, bool)>> {
                let row: Option<(Option<i64>, Option<Vec<u8>>)> =
                    sqlx::query_as("SELECT kek_version, wrapped_dek FROM customers WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(v, w)| (v, w.is_some())))
            }

            async fn principal(
                &self,
                kind: $crate::store::PrincipalKind,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                let sql = match kind {
                    $crate::store::PrincipalKind::Client => {
                        "SELECT id, name, role, secret_sha256, disabled, CAST(NULL AS BIGINT) FROM clients WHERE id = $1"
                    }
                    $crate::store::PrincipalKind::User => {
                        "SELECT id, username, role, password_hash, disabled, password_changed_at FROM users WHERE id = $1"
                    }
                };
                let row: Option<(uuid::Uuid, String, String, String, bool, Option<i64>)> =
                    sqlx::query_as(sql).bind(id).fetch_optional(&self.pool).await?;
                Ok(row.map(|(id, name, role, credential, disabled, password_changed_at)| {
                    $crate::store::PrincipalRow { id, name, role, credential, disabled, password_changed_at }
                }))
            }

            async fn user_by_name(
                &self,
                username: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                let row: Option<(uuid::Uuid, String, String, String, bool, Option<i64>)> = sqlx::query_as(
                    "SELECT id, username, role, password_hash, disabled, password_changed_at FROM users WHERE username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id, name, role, credential, disabled, password_changed_at)| {
                    $crate::store::PrincipalRow { id, name, role, credential, disabled, password_changed_at }
                }))
            }

            async fn client_by_name(
                &self,
                name: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                let row: Option<(uuid::Uuid, String, String, String, bool)> = sqlx::query_as(
                    "SELECT id, name, role, secret_sha256, disabled FROM clients WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id, name, role, credential, disabled)| {
                    $crate::store::PrincipalRow { id, name, role, credential, disabled, password_changed_at: None }
                }))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn customer_record(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::CustomerRecord>> {
                let row: Option<$crate::store::sql::RecordRow> =
                    sqlx::query_as(Self::SQL.record)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map($crate::store::sql::record_from_row).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn find_by_blind_index(
                &self,
                field: &str,
                digest: &[u8],
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT customer_id FROM blind_index WHERE field = $1 AND digest = $2 ORDER BY customer_id LIMIT 100",
                )
                .bind(field)
                .bind(digest)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn idempotency(
                &self,
                principal: &str,
                key: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::IdempotencyRow>> {
                let row: Option<(Vec<u8>, i64, String)> = sqlx::query_as(
                    "SELECT request_hash, status, body FROM idempotency_keys WHERE principal = $1 AND key = $2",
                )
                .bind(principal)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(request_hash, status, body)| $crate::store::IdempotencyRow {
                    request_hash,
                    status,
                    body,
                }))
            }

            async fn erasure_job(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ErasureJobRow>> {
                let row: Option<$crate::store::sql::ErasureJobTuple> =
                    sqlx::query_as($crate::store::sql::ERASURE_JOB)
                        .bind(customer)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map($crate::store::sql::erasure_job_from_row))
            }

            async fn erasure_jobs_with_status(
                &self,
                status: &str,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT customer_id FROM erasure_jobs WHERE status = $1 ORDER BY customer_id",
                )
                .bind(status)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn tombstones(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::TombstoneRow>> {
                let rows: Vec<(uuid::Uuid, String, i64)> = sqlx::query_as(
                    "SELECT customer_id, status, erased_at FROM tombstones ORDER BY customer_id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(customer_id, status, erased_at)| $crate::store::TombstoneRow {
                        customer_id,
                        status,
                        erased_at,
                    })
                    .collect())
            }

            async fn legal_hold(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::LegalHoldRow>> {
                let row: Option<$crate::store::sql::HoldTuple> =
                    sqlx::query_as($crate::store::sql::HOLD_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map($crate::store::sql::hold_from_row))
            }

            async fn legal_holds(
                &self,
                customer: Option<uuid::Uuid>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::LegalHoldRow>> {
                let rows: Vec<$crate::store::sql::HoldTuple> = match customer {
                    Some(c) => {
                        sqlx::query_as($crate::store::sql::HOLDS_OF_CUSTOMER)
                            .bind(c)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => {
                        sqlx::query_as($crate::store::sql::HOLDS_ACTIVE)
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                Ok(rows.into_iter().map($crate::store::sql::hold_from_row).collect())
            }

            async fn customers_with_expired_purposes(
                &self,
                now: i64,
                after: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT customer_id FROM value_purposes \
                     WHERE expires_at <= $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3",
                )
                .bind(now)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn customer_count(&self) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM customers")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn audit_events(
                &self,
                f: &$crate::store::AuditFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::audit::StoredEvent>> {
                let rows: Vec<$crate::store::sql::EventRow> =
                    sqlx::query_as($crate::store::sql::AUDIT_QUERY)
                        .bind(f.after_seq)
                        .bind(&f.customer_id)
                        .bind(&f.actor)
                        .bind(&f.action)
                        .bind(&f.purpose)
                        .bind(&f.decision)
                        .bind(f.from)
                        .bind(f.to)
                        .bind(f.limit)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map($crate::store::sql::event_from_row).collect())
            }

            async fn audit_head(&self) -> $crate::store::StoreResult<(i64, Vec<u8>)> {
                Ok(sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn audit_checkpoints(
                &self,
                from_seq: i64,
                through_seq: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::CheckpointRow>> {
                let rows: Vec<$crate::store::sql::CheckpointTuple> = sqlx::query_as(
                    "SELECT seq, hash, at, kid, signature FROM audit_checkpoints \
                     WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(from_seq)
                .bind(through_seq)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::sql::checkpoint_from_row).collect())
            }

            async fn audit_checkpoint_at_or_before(
                &self,
                seq: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::CheckpointRow>> {
                let row: Option<$crate::store::sql::CheckpointTuple> = sqlx::query_as(
                    "SELECT seq, hash, at, kid, signature FROM audit_checkpoints \
                     WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map($crate::store::sql::checkpoint_from_row))
            }

            async fn audit_prune_point(
                &self,
                before: i64,
            ) -> $crate::store::StoreResult<Option<i64>> {
                Ok(sqlx::query_scalar(
                    "SELECT c.seq FROM audit_checkpoints c JOIN audit_events e ON e.seq = c.seq \
                     WHERE e.at < $1 ORDER BY c.seq DESC LIMIT 1",
                )
                .bind(before)
                .fetch_optional(&self.pool)
                .await?)
            }
        }

        /// Inserts the events linked so far, in one statement.
        async fn insert_events(
            tx: &mut sqlx::Transaction<'static, $db>,
            pending: &mut $crate::store::sql::PendingEvents,
        ) -> Result<(), $crate::store::StoreError> {
            if let Some(rows) = pending.take() {
                sqlx::query(<$store>::SQL.events)
                    .bind(rows)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        /// Stores rewrapped data keys, in one statement.
        async fn rewrap_deks(
            tx: &mut sqlx::Transaction<'static, $db>,
            rewraps: &[&$crate::store::Mutation],
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(<$store>::SQL.rewraps)
                .bind($crate::store::sql::rewrap_rows(rewraps)?)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        /// Stores some values of one customer (consecutive `PutField`s of a
        /// unit) with their purposes and blind index entries: three
        /// statements however many values, plus one `DELETE` per replaced
        /// value of a customer not created in this unit.
        async fn put_fields(
            tx: &mut sqlx::Transaction<'static, $db>,
            puts: &[&$crate::store::Mutation],
            fresh: &[uuid::Uuid],
        ) -> Result<(), $crate::store::StoreError> {
            let Some($crate::store::Mutation::PutField { customer_id, .. }) = puts.first() else {
                return Ok(());
            };
            // Replacing a value removes the old ciphertext, its purposes and
            // its index entries (ON DELETE CASCADE). A customer created in
            // this unit has none: one statement fewer per value.
            if !fresh.contains(customer_id) {
                for m in puts {
                    if let $crate::store::Mutation::PutField { field, .. } = m {
                        sqlx::query("DELETE FROM field_values WHERE customer_id = $1 AND field = $2")
                            .bind(customer_id)
                            .bind(field)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
            let rows = $crate::store::sql::field_rows(puts)?;
            sqlx::query(<$store>::SQL.values)
                .bind(customer_id)
                .bind(rows.values)
                .execute(&mut **tx)
                .await?;
            if let Some(purposes) = rows.purposes {
                sqlx::query(<$store>::SQL.purposes)
                    .bind(customer_id)
                    .bind(purposes)
                    .execute(&mut **tx)
                    .await?;
            }
            if let Some(digests) = rows.digests {
                sqlx::query(<$store>::SQL.digests)
                    .bind(customer_id)
                    .bind(digests)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        /// Applies one mutation inside the batch transaction.
        async fn apply(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
            fresh: &[uuid::Uuid],
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::Mutation as M;
            match m {
                M::SetMeta { name, value } => {
                    sqlx::query("INSERT INTO vault_meta (name, value) VALUES ($1, $2)")
                        .bind(name)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                }
                M::InsertKek { version, wrapped, active, at } => {
                    sqlx::query(
                        "INSERT INTO keyring (version, wrapped, active, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(version)
                    .bind(wrapped)
                    .bind(active)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertSigningKey(k) => {
                    sqlx::query(
                        "INSERT INTO signing_keys (kid, kek_version, sealed, public_key, active, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&k.kid)
                    .bind(k.kek_version)
                    .bind(&k.sealed)
                    .bind(&k.public_key)
                    .bind(k.active)
                    .bind(k.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RotateKek { version, wrapped, previous, root_fingerprint, at } => {
                    let same_root: Option<String> = sqlx::query_scalar(
                        "SELECT name FROM vault_meta WHERE name = $1 AND value = $2",
                    )
                    .bind("root_fingerprint")
                    .bind(root_fingerprint)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if same_root.is_none() {
                        return Err($crate::store::StoreError::Conflict("root_key_changed".into()));
                    }
                    let r = sqlx::query(
                        "UPDATE keyring SET active = $2, deactivated_at = $3, rewrap_total = \
                         (SELECT COUNT(*) FROM customers WHERE kek_version = $1 AND wrapped_dek IS NOT NULL) \
                         WHERE version = $1 AND active",
                    )
                    .bind(previous)
                    .bind(false)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("kek_not_active".into()));
                    }
                    sqlx::query(
                        "INSERT INTO keyring (version, wrapped, active, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(version)
                    .bind(wrapped)
                    .bind(true)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RewrapKek { version, expected, wrapped } => {
                    let r = sqlx::query(
                        "UPDATE keyring SET wrapped = $3 WHERE version = $1 AND wrapped = $2",
                    )
                    .bind(version)
                    .bind(expected)
                    .bind(wrapped)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("kek_changed".into()));
                    }
                }
                M::ReplaceMeta { name, expected: Some(expected), value } => {
                    let r = sqlx::query("UPDATE vault_meta SET value = $3 WHERE name = $1 AND value = $2")
                        .bind(name)
                        .bind(expected)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("meta_changed".into()));
                    }
                }
                M::ReplaceMeta { name, expected: None, value } => {
                    sqlx::query(
                        "INSERT INTO vault_meta (name, value) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(name)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                }
                M::ExpectKekCount { count } => {
                    let n: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM keyring WHERE wrapped IS NOT NULL")
                            .fetch_one(&mut **tx)
                            .await?;
                    if n != *count {
                        return Err($crate::store::StoreError::Conflict("keyring_changed".into()));
                    }
                }
                M::RewrapDek { .. } => rewrap_deks(tx, &[m]).await?,
                M::RewrapSigningKey { kid, from_version, kek_version, sealed } => {
                    sqlx::query(
                        "UPDATE signing_keys SET kek_version = $3, sealed = $4 \
                         WHERE kid = $1 AND kek_version = $2",
                    )
                    .bind(kid)
                    .bind(from_version)
                    .bind(kek_version)
                    .bind(sealed)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RetireKek { version, at } => {
                    let row: Option<(bool, Option<Vec<u8>>)> =
                        sqlx::query_as("SELECT active, wrapped FROM keyring WHERE version = $1")
                            .bind(version)
                            .fetch_optional(&mut **tx)
                            .await?;
                    match row {
                        None => return Err($crate::store::StoreError::NotFound),
                        Some((true, _)) => {
                            return Err($crate::store::StoreError::Conflict("kek_active".into()));
                        }
                        Some((_, None)) => {
                            return Err($crate::store::StoreError::Conflict("kek_retired".into()));
                        }
                        Some((false, Some(_))) => {}
                    }
                    let r = sqlx::query(
                        "UPDATE keyring SET wrapped = NULL, retired_at = $2 \
                         WHERE version = $1 AND NOT active AND wrapped IS NOT NULL \
                         AND NOT EXISTS (SELECT 1 FROM customers \
                             WHERE kek_version = $1 AND wrapped_dek IS NOT NULL) \
                         AND NOT EXISTS (SELECT 1 FROM signing_keys \
                             WHERE kek_version = $1 AND length(sealed) > 0)",
                    )
                    .bind(version)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("kek_in_use".into()));
                    }
                }
                M::RotateSigningKey { key, previous_kid, revoke_previous, at } => {
                    let live: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM keyring WHERE version = $1 AND wrapped IS NOT NULL",
                    )
                    .bind(key.kek_version)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if live.is_none() {
                        return Err($crate::store::StoreError::Conflict("kek_retired".into()));
                    }
                    let r = sqlx::query(
                        "UPDATE signing_keys SET active = $2, retired_at = $3, sealed = $4, \
                         tokens_revoked = $5 WHERE kid = $1 AND active",
                    )
                    .bind(previous_kid)
                    .bind(false)
                    .bind(at)
                    .bind(Vec::<u8>::new())
                    .bind(revoke_previous)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict(
                            "signing_key_not_active".into(),
                        ));
                    }
                    sqlx::query(
                        "INSERT INTO signing_keys (kid, kek_version, sealed, public_key, active, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&key.kid)
                    .bind(key.kek_version)
                    .bind(&key.sealed)
                    .bind(&key.public_key)
                    .bind(true)
                    .bind(key.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertClient { id, name, role, secret_sha256, at } => {
                    sqlx::query(
                        "INSERT INTO clients (id, name, role, secret_sha256, disabled, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(role)
                    .bind(secret_sha256)
                    .bind(false)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::SetClientDisabled { id, disabled } => {
                    let r = sqlx::query("UPDATE clients SET disabled = $2 WHERE id = $1")
                        .bind(id)
                        .bind(disabled)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::InsertUser { id, username, role, password_hash, at } => {
                    sqlx::query(
                        "INSERT INTO users (id, username, role, password_hash, disabled, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(id)
                    .bind(username)
                    .bind(role)
                    .bind(password_hash)
                    .bind(false)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::SetUserDisabled { id, disabled } => {
                    let r = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
                        .bind(id)
                        .bind(disabled)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::SetUserPassword { id, password_hash, at } => {
                    let r = sqlx::query(
                        "UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(password_hash)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::InsertCustomer { id, external_id, kek_version, wrapped_dek, at } => {
                    sqlx::query(
                        "INSERT INTO customers (id, external_id, created_at, kek_version, wrapped_dek) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(external_id)
                    .bind(at)
                    .bind(kek_version)
                    .bind(wrapped_dek)
                    .execute(&mut **tx)
                    .await?;
                }
                M::PutField { .. } => put_fields(tx, &[m], fresh).await?,
                M::DeleteField { customer_id, field } => {
                    sqlx::query("DELETE FROM field_values WHERE customer_id = $1 AND field = $2")
                        .bind(customer_id)
                        .bind(field)
                        .execute(&mut **tx)
                        .await?;
                }
                M::BeginErasure { customer_id, receipt_id, request_id, actor, role, force_full, at } => {
                    let r = sqlx::query(
                        "UPDATE customers SET erased_at = COALESCE(erased_at, $2), external_id = NULL \
                         WHERE id = $1",
                    )
                    .bind(customer_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    sqlx::query(
                        "INSERT INTO erasure_jobs (customer_id, receipt_id, request_id, actor, role, \
                         status, step, force_full, retained, started_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'running', 1, $6, '[]', $7, $7)",
                    )
                    .bind(customer_id)
                    .bind(receipt_id)
                    .bind(request_id)
                    .bind(actor)
                    .bind(role)
                    .bind(force_full)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::DeleteConsents { customer_id } => {
                    sqlx::query("DELETE FROM consent_events WHERE customer_id = $1")
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("DELETE FROM objections WHERE customer_id = $1")
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                }
                M::AdvanceErasure { customer_id, from_step, to_step, retained, at } => {
                    let r = sqlx::query(
                        "UPDATE erasure_jobs SET step = $3, retained = COALESCE($4, retained), \
                         updated_at = $5 WHERE customer_id = $1 AND status = 'running' AND step = $2",
                    )
                    .bind(customer_id)
                    .bind(from_step)
                    .bind(to_step)
                    .bind(retained)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::ReplaceCiphertext { customer_id, field, ciphertext } => {
                    let r = sqlx::query(
                        "UPDATE field_values SET ciphertext = $3 WHERE customer_id = $1 AND field = $2",
                    )
                    .bind(customer_id)
                    .bind(field)
                    .bind(ciphertext)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::SetValuePurposes { customer_id, field, purposes } => {
                    sqlx::query("DELETE FROM value_purposes WHERE customer_id = $1 AND field = $2")
                        .bind(customer_id)
                        .bind(field)
                        .execute(&mut **tx)
                        .await?;
                    if let Some(rows) = $crate::store::sql::purpose_rows(field, purposes)? {
                        sqlx::query(<$store>::SQL.purposes)
                            .bind(customer_id)
                            .bind(rows)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                M::RekeyCustomer { customer_id, kek_version, wrapped_dek } => {
                    let r = sqlx::query(
                        "UPDATE customers SET kek_version = $2, wrapped_dek = $3 \
                         WHERE id = $1 AND wrapped_dek IS NOT NULL",
                    )
                    .bind(customer_id)
                    .bind(kek_version)
                    .bind(wrapped_dek)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    sqlx::query("DELETE FROM blind_index WHERE customer_id = $1")
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                }
                M::FinishErasure { customer_id, status, retained, erased_at, at } => {
                    let guard = if status == "erased" {
                        "UPDATE erasure_jobs SET status = 'erased', step = 4, retained = $2, \
                         updated_at = $3, finished_at = $3 WHERE customer_id = $1 AND status <> 'erased'"
                    } else {
                        "UPDATE erasure_jobs SET status = 'partial', step = 4, retained = $2, \
                         updated_at = $3 WHERE customer_id = $1 AND status = 'running'"
                    };
                    let r = sqlx::query(guard)
                        .bind(customer_id)
                        .bind(retained)
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    let tombstone = if status == "erased" {
                        for sql in [
                            "DELETE FROM field_values WHERE customer_id = $1",
                            "DELETE FROM blind_index WHERE customer_id = $1",
                            "DELETE FROM consent_events WHERE customer_id = $1",
                            "DELETE FROM objections WHERE customer_id = $1",
                        ] {
                            sqlx::query(sql).bind(customer_id).execute(&mut **tx).await?;
                        }
                        sqlx::query(
                            "UPDATE customers SET wrapped_dek = NULL, kek_version = NULL, \
                             external_id = NULL, erased_at = COALESCE(erased_at, $2) WHERE id = $1",
                        )
                        .bind(customer_id)
                        .bind(erased_at)
                        .execute(&mut **tx)
                        .await?;
                        "erased"
                    } else {
                        "partially_erased"
                    };
                    sqlx::query(
                        "INSERT INTO tombstones (customer_id, status, erased_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (customer_id) DO UPDATE SET status = excluded.status",
                    )
                    .bind(customer_id)
                    .bind(tombstone)
                    .bind(erased_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::UpdateRetained { customer_id, retained, at } => {
                    let r = sqlx::query(
                        "UPDATE erasure_jobs SET retained = $2, updated_at = $3 \
                         WHERE customer_id = $1 AND status = 'partial'",
                    )
                    .bind(customer_id)
                    .bind(retained)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::InsertLegalHold(h) => {
                    sqlx::query(
                        "INSERT INTO legal_holds (id, customer_id, fields, reason, basis, purpose, \
                         review_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(h.id)
                    .bind(h.customer_id)
                    .bind(serde_json::to_string(&h.fields).unwrap_or_default())
                    .bind(&h.reason)
                    .bind(&h.basis)
                    .bind(&h.purpose)
                    .bind(h.review_at)
                    .bind(&h.created_by)
                    .bind(h.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::ReleaseLegalHold { id, at } => {
                    let r = sqlx::query(
                        "UPDATE legal_holds SET released_at = $2 WHERE id = $1 AND released_at IS NULL",
                    )
                    .bind(id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::ExpirePurpose { customer_id, field, purpose, now } => {
                    sqlx::query(
                        "DELETE FROM value_purposes WHERE customer_id = $1 AND field = $2 \
                         AND purpose = $3 AND expires_at <= $4",
                    )
                    .bind(customer_id)
                    .bind(field)
                    .bind(purpose)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                M::DeleteFieldIfUnused { customer_id, field } => {
                    sqlx::query(
                        "DELETE FROM field_values WHERE customer_id = $1 AND field = $2 \
                         AND NOT EXISTS (SELECT 1 FROM value_purposes p \
                         WHERE p.customer_id = $1 AND p.field = $2)",
                    )
                    .bind(customer_id)
                    .bind(field)
                    .execute(&mut **tx)
                    .await?;
                }
                M::Requests(r) => apply_requests(tx, r).await?,
                M::AppendConsent(c) => {
                    sqlx::query(
                        "INSERT INTO consent_events (id, customer_id, purpose, action, notice_version, \
                         notice_text_sha256, language, jurisdiction, channel, captured_by, at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(c.id)
                    .bind(c.customer_id)
                    .bind(&c.purpose)
                    .bind(&c.action)
                    .bind(&c.notice_version)
                    .bind(&c.notice_text_sha256)
                    .bind(&c.language)
                    .bind(&c.jurisdiction)
                    .bind(&c.channel)
                    .bind(&c.captured_by)
                    .bind(c.at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::SaveIdempotency { principal, key, request_hash, status, body, at } => {
                    sqlx::query(
                        "INSERT INTO idempotency_keys (principal, key, request_hash, status, body, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(principal)
                    .bind(key)
                    .bind(request_hash)
                    .bind(status)
                    .bind(body)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertCheckpoint(c) => {
                    let stored: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE seq = $1")
                            .bind(c.seq)
                            .fetch_one(&mut **tx)
                            .await?;
                    if stored > 0 {
                        return Ok(());
                    }
                    let events: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_events WHERE seq = $1 AND hash = $2",
                    )
                    .bind(c.seq)
                    .bind(&c.hash)
                    .fetch_one(&mut **tx)
                    .await?;
                    let head: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_head WHERE id = 1 AND seq = $1 AND hash = $2",
                    )
                    .bind(c.seq)
                    .bind(&c.hash)
                    .fetch_one(&mut **tx)
                    .await?;
                    if events + head == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    sqlx::query(
                        "INSERT INTO audit_checkpoints (seq, hash, at, kid, signature) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(c.seq)
                    .bind(&c.hash)
                    .bind(c.at)
                    .bind(&c.kid)
                    .bind(&c.signature)
                    .execute(&mut **tx)
                    .await?;
                }
                M::PruneAudit { through_seq, before } => {
                    let anchor: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE seq = $1")
                            .bind(through_seq)
                            .fetch_one(&mut **tx)
                            .await?;
                    if anchor == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    let young: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_events WHERE seq <= $1 AND at >= $2",
                    )
                    .bind(through_seq)
                    .bind(before)
                    .fetch_one(&mut **tx)
                    .await?;
                    if young > 0 {
                        return Err($crate::store::StoreError::Conflict("audit_retention".into()));
                    }
                    sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                        .bind(through_seq)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
                        .bind(through_seq)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Ok(())
        }
    };
}

pub(super) use impl_store;
