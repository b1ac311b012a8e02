//! Requests as the store keeps them: conversions between the life cycle's
//! [`Request`] and the store's [`RequestRow`] (plain columns), and
//! [`StoredRequests`], the store's request reads as [`Request`]s.
//!
//! The store knows no request life cycle; this is the one place where its
//! names (`kind`, `regulation`, `status`, `denial_reason`) are parsed back.

use async_trait::async_trait;
use uuid::Uuid;

use super::lifecycle::{DenialReason, Kind, Regulation, Request, Status};
use crate::language::Language;
use crate::store::{
    RequestFilter, RequestRow, RequestStore, StoreError, StoreResult, UnknownValue,
};

impl From<&Request> for RequestRow {
    fn from(r: &Request) -> Self {
        RequestRow {
            id: r.id,
            kind: r.kind.as_str().to_owned(),
            regulation: r.regulation.as_str().to_owned(),
            channel: r.channel.clone(),
            customer_id: r.customer_id,
            identifier_field: r.identifier_field.clone(),
            status: r.status.as_str().to_owned(),
            filed_by: r.filed_by.clone(),
            received_at: r.received_at,
            due_at: r.due_at,
            extended_at: r.extended_at,
            extension_reason: r.extension_reason.clone(),
            verified_at: r.verified_at,
            verification_method: r.verification_method.clone(),
            verified_by: r.verified_by.clone(),
            code_hash: r.code_hash.clone(),
            code_expires_at: r.code_expires_at,
            code_attempts: r.code_attempts,
            approved_at: r.approved_at,
            approved_by: r.approved_by.clone(),
            responded_at: r.responded_at,
            denial_reason: r.denial_reason.map(|d| d.as_str().to_owned()),
            denial_note: r.denial_note.clone(),
            purpose: r.purpose.clone(),
            lift: r.lift,
            changes: r.changes.clone(),
            result: r.result.clone(),
            merged_into: r.merged_into,
            language: Some(r.language.as_str().to_owned()),
            version: r.version,
        }
    }
}

fn known<T>(
    what: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(value).ok_or_else(|| {
        StoreError::Database(
            UnknownValue {
                what,
                value: value.to_owned(),
            }
            .to_string(),
        )
    })
}

impl TryFrom<RequestRow> for Request {
    type Error = StoreError;

    /// Database error when a stored name is not one the life cycle knows.
    fn try_from(r: RequestRow) -> Result<Self, StoreError> {
        Ok(Request {
            id: r.id,
            kind: known("request kind", &r.kind, Kind::parse)?,
            regulation: known("regulation", &r.regulation, Regulation::parse)?,
            channel: r.channel,
            customer_id: r.customer_id,
            identifier_field: r.identifier_field,
            status: known("request status", &r.status, Status::parse)?,
            filed_by: r.filed_by,
            received_at: r.received_at,
            due_at: r.due_at,
            extended_at: r.extended_at,
            extension_reason: r.extension_reason,
            verified_at: r.verified_at,
            verification_method: r.verification_method,
            verified_by: r.verified_by,
            code_hash: r.code_hash,
            code_expires_at: r.code_expires_at,
            code_attempts: r.code_attempts,
            approved_at: r.approved_at,
            approved_by: r.approved_by,
            responded_at: r.responded_at,
            denial_reason: r
                .denial_reason
                .map(|d| known("denial reason", &d, DenialReason::parse))
                .transpose()?,
            denial_note: r.denial_note,
            purpose: r.purpose,
            lift: r.lift,
            changes: r.changes,
            result: r.result,
            merged_into: r.merged_into,
            language: match r.language.as_deref() {
                None => Language::En,
                Some(tag) => known("request language", tag, Language::parse)?,
            },
            version: r.version,
        })
    }
}

fn requests(rows: Vec<RequestRow>) -> StoreResult<Vec<Request>> {
    rows.into_iter().map(Request::try_from).collect()
}

/// The store's request reads ([`RequestStore`]) as life-cycle
/// [`Request`]s; every store has them.
#[async_trait]
pub trait StoredRequests {
    async fn request(&self, id: Uuid) -> StoreResult<Option<Request>>;
    /// Open requests of the customer, oldest first.
    async fn open_requests_of(&self, customer: Uuid) -> StoreResult<Vec<Request>>;
    /// Every request of the customer, oldest first.
    async fn requests_of(&self, customer: Uuid) -> StoreResult<Vec<Request>>;
    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<Request>>;
    /// Requests received in `[from, to)`.
    async fn requests_received(&self, from: i64, to: i64) -> StoreResult<Vec<Request>>;
    /// Requests with status `status`, by due date (background work).
    async fn requests_with_status(&self, status: Status, limit: i64) -> StoreResult<Vec<Request>>;
}

#[async_trait]
impl<S: RequestStore + ?Sized> StoredRequests for S {
    async fn request(&self, id: Uuid) -> StoreResult<Option<Request>> {
        self.request_row(id)
            .await?
            .map(Request::try_from)
            .transpose()
    }

    async fn open_requests_of(&self, customer: Uuid) -> StoreResult<Vec<Request>> {
        requests(self.open_request_rows_of(customer).await?)
    }

    async fn requests_of(&self, customer: Uuid) -> StoreResult<Vec<Request>> {
        requests(self.request_rows_of(customer).await?)
    }

    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<Request>> {
        requests(self.list_request_rows(filter).await?)
    }

    async fn requests_received(&self, from: i64, to: i64) -> StoreResult<Vec<Request>> {
        requests(self.request_rows_received(from, to).await?)
    }

    async fn requests_with_status(&self, status: Status, limit: i64) -> StoreResult<Vec<Request>> {
        requests(
            self.request_rows_with_status(status.as_str(), limit)
                .await?,
        )
    }
}
