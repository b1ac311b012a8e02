//! The one error type of the services: a kind (what went wrong, in terms a
//! caller can act on), a stable `code`, and optionally a detail and the
//! field concerned. Details name fields and rules, never values.
//!
//! The services know nothing of HTTP: `src/http/error.rs` maps a
//! [`ServiceError`] to a problem+json answer in one place, the command line
//! prints it.

/// What kind of failure, independent of any transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed or breaks a rule (HTTP 400).
    BadRequest,
    /// No valid credential (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// No such thing, or not for this caller (404).
    NotFound,
    /// The method does not apply to this resource (405).
    MethodNotAllowed,
    /// The state does not allow it, or it exists already (409).
    Conflict,
    /// A precondition of the caller's does not hold (412).
    PreconditionFailed,
    /// The request is larger than accepted (413).
    PayloadTooLarge,
    /// The body is not in a format the vault reads (415).
    UnsupportedMediaType,
    /// Well-formed, but cannot be carried out as asked (422).
    Unprocessable,
    /// Too many attempts or requests; retry later (429).
    TooManyRequests,
    /// The database or the audit trail cannot take it now; retry (503).
    Unavailable,
    /// An unexpected failure; the cause is logged, never shown (500).
    Internal,
}

impl ErrorKind {
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::BadRequest,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Conflict,
        ErrorKind::PreconditionFailed,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::Unprocessable,
        ErrorKind::TooManyRequests,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// Whether the failure is the vault's, not the caller's.
    pub fn is_server_side(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Internal)
    }
}

#[derive(Debug, Clone)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub detail: Option<String>,
    pub field: Option<String>,
    /// Seconds, for `TooManyRequests` and `Unavailable`.
    pub retry_after: Option<u64>,
    /// The service has already recorded this refusal in the audit trail;
    /// the edge records every other refusal itself.
    pub audited: bool,
    /// The OAuth 2.0 `error` value (RFC 6749 §5.2, RFC 6750 §3.1):
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type`, `invalid_token`, `insufficient_scope`.
    pub oauth_error: Option<&'static str>,
    /// The refused credential came by HTTP Basic authentication; the answer
    /// challenges for Basic (RFC 6749 §5.2) instead of Bearer.
    pub basic_challenge: bool,
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn new(kind: ErrorKind, code: &'static str) -> Self {
        ServiceError {
            kind,
            code,
            detail: None,
            field: None,
            retry_after: None,
            audited: false,
            oauth_error: None,
            basic_challenge: false,
        }
    }
    /// Marks the refusal as recorded in the audit trail.
    pub fn audited(mut self) -> Self {
        self.audited = true;
        self
    }
    /// Sets the OAuth 2.0 `error` value.
    pub fn oauth(mut self, error: &'static str) -> Self {
        self.oauth_error = Some(error);
        self
    }
    /// Answers with a Basic challenge (client authentication by HTTP Basic).
    pub fn basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }
    pub fn bad_request(code: &'static str) -> Self {
        Self::new(ErrorKind::BadRequest, code)
    }
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::bad_request("invalid_request").detail(detail)
    }
    pub fn forbidden(code: &'static str) -> Self {
        Self::new(ErrorKind::Forbidden, code)
    }
    /// Forbidden because the caller's role (or token) does not allow the
    /// operation: RFC 6750 `insufficient_scope`.
    pub fn insufficient_scope(code: &'static str) -> Self {
        Self::forbidden(code).oauth("insufficient_scope")
    }
    pub fn unauthenticated() -> Self {
        Self::new(ErrorKind::Unauthenticated, "unauthenticated")
    }
    /// A bearer token was presented but is malformed, expired, forged or no
    /// longer honoured (RFC 6750 `invalid_token`).
    pub fn invalid_token() -> Self {
        Self::unauthenticated().oauth("invalid_token")
    }
    pub fn not_found(code: &'static str) -> Self {
        Self::new(ErrorKind::NotFound, code)
    }
    pub fn conflict(code: &'static str) -> Self {
        Self::new(ErrorKind::Conflict, code)
    }
    pub fn unprocessable(code: &'static str) -> Self {
        Self::new(ErrorKind::Unprocessable, code)
    }
    pub fn too_many(code: &'static str, retry_after: u64) -> Self {
        let mut e = Self::new(ErrorKind::TooManyRequests, code);
        e.retry_after = Some(retry_after);
        e
    }
    /// The audit trail (or the database behind it) cannot take the event.
    pub fn unavailable() -> Self {
        let mut e = Self::new(ErrorKind::Unavailable, "unavailable");
        e.retry_after = Some(1);
        e
    }
    /// An unexpected failure. The cause is logged; the answer says nothing.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorKind::Internal, "internal")
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) if !self.kind.is_server_side() => write!(f, "{}: {d}", self.code),
            _ => f.write_str(self.code),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "database error");
        ServiceError::unavailable()
    }
}

impl From<crate::audit::CommitError> for ServiceError {
    fn from(e: crate::audit::CommitError) -> Self {
        match e {
            crate::audit::CommitError::Conflict(_) => ServiceError::conflict("conflict"),
            crate::audit::CommitError::NotFound => ServiceError::not_found("not_found"),
            crate::audit::CommitError::Unavailable => ServiceError::unavailable(),
        }
    }
}

impl From<crate::policy::PurposeError> for ServiceError {
    fn from(e: crate::policy::PurposeError) -> Self {
        match e {
            // The role may not use the purpose.
            crate::policy::PurposeError::NotPermitted => ServiceError::insufficient_scope(e.code()),
            _ => ServiceError::new(ErrorKind::BadRequest, e.code()),
        }
    }
}

impl From<crate::policy::CollectError> for ServiceError {
    /// The detail names the field and purpose, never a value.
    fn from(e: crate::policy::CollectError) -> Self {
        let err = match e {
            // The role may not collect for the purpose.
            crate::policy::CollectError::NotPermitted(_) => {
                ServiceError::insufficient_scope(e.code())
            }
            _ => ServiceError::new(ErrorKind::BadRequest, e.code()),
        };
        err.detail(e.to_string())
    }
}
