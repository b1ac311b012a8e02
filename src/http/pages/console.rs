//! The staff console, `/console/`: a vault user signs in with their
//! username and password and works in the browser.
//!
//! - Sign-in gives a server-side session ([`crate::auth::session`]): the
//!   `pv_console` cookie (HttpOnly, SameSite=Strict, `Path=/console`,
//!   Secure under TLS) holds its random id; 15 minutes idle, 8 hours at
//!   most; sign-out deletes it. Sign-in is throttled like the password
//!   grant of `POST /v1/token`.
//! - Every POST form carries a CSRF token: the sign-in form the
//!   foundation's ([`super::Form`]), the others one bound to the session
//!   ([`StaffForm`]); a POST without the right token is refused (403).
//! - The privacy team (`requests.process`): the queue, a request with its
//!   timeline and approve / deny / extend, legal holds, the yearly metrics.
//! - Auditors (`audit`): trail search, a customer's access log, verify,
//!   checkpoints, and downloads of the public key and the export.
//!
//! Every page calls the same service as the API (the auditor's pages
//! [`crate::audit::service`], the privacy team's [`crate::requests::staff`]
//! and [`crate::requests::holds`]) with
//! the signed-in user as the caller, so a page checks, does and audits
//! exactly what the API does: the same capability checks (a role without
//! the capability gets 403), the same views (nobody sees more than through
//! the API), the same audit events with the user as the actor. A refusal
//! no service recorded is recorded as the API records it
//! ([`refusals::record`]).

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::cookies::{self, Cookie};
use super::{Form, Page, csrf};
use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::Action;
use crate::audit::service as audit;
use crate::auth::session;
use crate::error::ServiceError;
use crate::http::audit::ndjson_download;
use crate::http::error::status_of;
use crate::http::extract::parse_id;
use crate::http::refusals::{self, About};
use crate::language::Language;
use crate::policy::Capability;
use crate::requests::holds;
use crate::requests::lifecycle::{DenialReason, Kind, Status};
use crate::requests::staff::{self, DenyBody, ExtendBody, ListQuery, MetricsQuery};
use crate::requests::view::RequestView;
use crate::state::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "pv_console";
/// Its path: the console only.
pub const SESSION_PATH: &str = "/console";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(to_index))
        .route("/console/", get(index).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/requests", get(queue))
        .route("/console/requests/{id}", get(request_page).post(act))
        .route("/console/holds", get(holds).post(place_hold))
        .route("/console/holds/{id}/release", post(release_hold))
        .route("/console/metrics", get(metrics))
        .route("/console/audit", get(trail))
        .route("/console/audit/verify", get(verify))
        .route("/console/audit/access-log", get(access_log))
        .route("/console/audit/public-key", get(public_key))
        .route("/console/audit/export", get(export))
}

// ---------------------------------------------------------------------------
// The signed-in user
// ---------------------------------------------------------------------------

/// A page request by a signed-in user: the page, the user as the caller of
/// the API's functions, and the session id (the binding of its forms'
/// CSRF tokens). Without a live session: 303 to the sign-in page.
pub struct Staff {
    pub page: Page,
    pub actor: Actor,
    session: Zeroizing<String>,
}

impl Staff {
    /// The CSRF token of this session's forms.
    fn csrf(&self, state: &AppState) -> String {
        csrf::token(state, &self.session)
    }

    fn has(&self, state: &AppState, cap: Capability) -> bool {
        self.actor.has(&state.policy, cap)
    }

    /// `template` with `ctx`, the console's navigation and the session's
    /// form token.
    fn render(&self, state: &AppState, template: &str, ctx: Value) -> Response {
        let ctx = context! {
            ..ctx,
            ..context! {
                staff_csrf => self.csrf(state),
                user_role => self.actor.role.clone(),
                can_process => self.has(state, Capability::RequestsProcess),
                can_audit => self.has(state, Capability::Audit),
                can_hold => self.has(state, Capability::LegalHold),
            }
        };
        self.page.render(state, StatusCode::OK, template, ctx)
    }

    /// A refusal of `action` as a page: recorded in the trail as the API
    /// records it (unless the service did), then the same status and a
    /// message in the page's language.
    async fn refused(
        &self,
        state: &AppState,
        action: Action,
        about: About,
        e: &ServiceError,
    ) -> Response {
        if let Err(unrecorded) = refusals::record(state, &self.actor, action, about, e).await {
            return self
                .page
                .error(status_of(unrecorded.kind), error_key(&unrecorded));
        }
        self.page.error(status_of(e.kind), error_key(e))
    }
}

/// The session of the request, if it is live.
async fn session_of(
    headers: &axum::http::HeaderMap,
    state: &AppState,
    page: &Page,
) -> Option<(Actor, String)> {
    let id = cookies::get(headers, SESSION_COOKIE)?.to_owned();
    match session::lookup(state, &id, &page.request_id, page.client.clone()).await {
        Ok(Some(actor)) => Some((actor, id)),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(code = e.code, "console session lookup failed");
            None
        }
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let mut page = Page::from_request_parts(parts, state).await?;
        match session_of(&parts.headers, state, &page).await {
            Some((actor, id)) => Ok(Staff {
                page,
                actor,
                session: Zeroizing::new(id),
            }),
            None => {
                if cookies::get(&parts.headers, SESSION_COOKIE).is_some() {
                    page.set_cookie(Cookie::removal(SESSION_COOKIE, SESSION_PATH));
                }
                Err(page.redirect("/console/"))
            }
        }
    }
}

/// A POST form of a signed-in user whose `csrf` field is the token bound
/// to their session; otherwise 403 and the handler never runs (a POST
/// without a live session is refused the same way).
pub struct StaffForm<T> {
    pub staff: Staff,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for StaffForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let page = Page::from_request_parts(&mut parts, state).await?;
        let session = cookies::get(&parts.headers, SESSION_COOKIE)
            .filter(|s| session::well_formed(s))
            .map(|s| Zeroizing::new(s.to_owned()));
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| page.error(StatusCode::PAYLOAD_TOO_LARGE, "common-error-too-large"))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| page.error(StatusCode::BAD_REQUEST, "common-error-bad-form"))?;
        let submitted = pairs
            .iter()
            .find(|(k, _)| k == csrf::FIELD)
            .map(|(_, v)| v.as_str());
        let session = match (session, submitted) {
            (Some(s), Some(t)) if csrf::check(state, &s, t) => s,
            _ => return Err(page.error(StatusCode::FORBIDDEN, "common-error-csrf")),
        };
        let actor =
            match session::lookup(state, &session, &page.request_id, page.client.clone()).await {
                Ok(Some(a)) => a,
                Ok(None) => return Err(page.redirect("/console/")),
                Err(e) => return Err(page.error(status_of(e.kind), error_key(&e))),
            };
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|_| page.error(StatusCode::BAD_REQUEST, "common-error-bad-form"))?;
        Ok(StaffForm {
            staff: Staff {
                page,
                actor,
                session,
            },
            form,
        })
    }
}

/// The catalog key explaining an API refusal.
fn error_key(e: &ServiceError) -> &'static str {
    match status_of(e.kind) {
        StatusCode::FORBIDDEN => "console-error-forbidden",
        StatusCode::NOT_FOUND => "console-error-not-found",
        StatusCode::CONFLICT => "console-error-conflict",
        StatusCode::TOO_MANY_REQUESTS => "console-error-too-many",
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => match e.code {
            "reason_required" => "console-error-reason-required",
            "invalid_filter" => "console-error-filter",
            _ => "console-error-invalid",
        },
        StatusCode::SERVICE_UNAVAILABLE => "console-error-unavailable",
        _ => "common-error-internal",
    }
}

/// The page for a path naming no request.
fn no_such_request(page: &Page) -> Response {
    page.error(StatusCode::NOT_FOUND, "console-error-not-found")
}

fn time(s: &str) -> String {
    // RFC 3339 with microseconds → minutes, UTC: "2026-01-31 10:00 UTC".
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Sign-in and sign-out
// ---------------------------------------------------------------------------

async fn to_index(page: Page) -> Response {
    page.redirect("/console/")
}

/// The sign-in form, or (signed in) the console's home page.
async fn index(
    State(state): State<AppState>,
    page: Page,
    headers: axum::http::HeaderMap,
) -> Response {
    match session_of(&headers, &state, &page).await {
        Some((actor, id)) => {
            let staff = Staff {
                page,
                actor,
                session: Zeroizing::new(id),
            };
            staff.render(&state, "console/home.html", context! {})
        }
        None => sign_in_page(&state, page, StatusCode::OK, None),
    }
}

fn sign_in_page(
    state: &AppState,
    mut page: Page,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    if status != StatusCode::OK {
        page.set_cookie(Cookie::removal(SESSION_COOKIE, SESSION_PATH));
    }
    page.render(
        state,
        status,
        "console/sign_in.html",
        context! { error => error.map(str::to_owned) },
    )
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn sign_in(
    State(state): State<AppState>,
    mut page: Page,
    Form(f): Form<SignInForm>,
) -> Response {
    let password = Zeroizing::new(f.password);
    let outcome = session::sign_in(
        &state,
        f.username.trim(),
        password,
        &page.request_id,
        page.client.clone(),
    )
    .await;
    match outcome {
        Ok(Ok(started)) => {
            page.set_cookie(Cookie::new(
                SESSION_COOKIE,
                started.id.as_str(),
                SESSION_PATH,
            ));
            page.redirect("/console/")
        }
        Ok(Err(session::Refused::InvalidCredentials)) => sign_in_page(
            &state,
            page,
            StatusCode::UNAUTHORIZED,
            Some("console-sign-in-wrong"),
        ),
        Ok(Err(session::Refused::Throttled(wait))) => {
            let mut resp = sign_in_page(
                &state,
                page,
                StatusCode::TOO_MANY_REQUESTS,
                Some("console-sign-in-throttled"),
            );
            if let Ok(v) = wait.to_string().parse() {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(e) => page.error(status_of(e.kind), error_key(&e)),
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn sign_out(State(state): State<AppState>, f: StaffForm<Empty>) -> Response {
    let StaffForm { mut staff, .. } = f;
    if let Err(e) = session::sign_out(&state, &staff.session, &staff.actor).await {
        return staff
            .refused(&state, Action::ConsoleSignOut, About::Nothing, &e)
            .await;
    }
    staff
        .page
        .set_cookie(Cookie::removal(SESSION_COOKIE, SESSION_PATH));
    staff.page.redirect("/console/")
}

// ---------------------------------------------------------------------------
// Privacy team: the queue, a request, holds, metrics
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct QueueQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    overdue: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

async fn queue(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let pick = |name: &str| nonempty(q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    let qq = QueueQuery {
        status: pick("status"),
        kind: pick("kind"),
        overdue: pick("overdue"),
        after: pick("after"),
    };
    let after = match qq.after.as_deref() {
        Some(a) => match Uuid::parse_str(a) {
            Ok(u) => Some(u),
            Err(_) => {
                return staff
                    .page
                    .error(StatusCode::BAD_REQUEST, "console-error-filter");
            }
        },
        None => None,
    };
    let overdue = qq.overdue.as_deref() == Some("true");
    let filter = ListQuery {
        status: qq.status.clone(),
        kind: qq.kind.clone(),
        overdue: Some(overdue),
        after,
        limit: Some(100),
    };
    let list = match staff::list(&state, &staff.actor, &filter).await {
        Ok(l) => l,
        Err(e) => {
            return staff
                .refused(&state, Action::RequestList, About::Nothing, &e)
                .await;
        }
    };
    let mut rows: Vec<Value> = list
        .requests
        .iter()
        .map(|r| {
            context! {
                id => r.id.to_string(),
                kind => r.kind.clone(),
                regulation => r.regulation.clone(),
                status => r.status.clone(),
                received_at => time(&r.received_at),
                due_at => time(&r.due_at),
                due_sort => r.due_at.clone(),
                overdue => r.staff.as_ref().is_some_and(|s| s.overdue),
                extended => r.extended,
            }
        })
        .collect();
    rows.sort_by_key(|v| {
        v.get_attr("due_sort")
            .ok()
            .and_then(|d| d.as_str().map(str::to_owned))
            .unwrap_or_default()
    });
    let next = list.next_after.map(|n| {
        let mut qs = vec![("after".to_owned(), n.to_string())];
        for (k, v) in [("status", &qq.status), ("kind", &qq.kind)] {
            if let Some(v) = v {
                qs.push((k.to_owned(), v.clone()));
            }
        }
        if overdue {
            qs.push(("overdue".into(), "true".into()));
        }
        format!(
            "/console/requests?{}",
            serde_urlencoded::to_string(qs).unwrap_or_default()
        )
    });
    staff.render(
        &state,
        "console/queue.html",
        context! {
            requests => rows,
            statuses => Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            kinds => Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            status => qq.status.unwrap_or_default(),
            kind => qq.kind.unwrap_or_default(),
            overdue => overdue,
            next => next,
        },
    )
}

async fn request_page(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> Response {
    let Ok(rid) = Uuid::parse_str(&id) else {
        return no_such_request(&staff.page);
    };
    let view = match parse_id(&id) {
        Ok(id) => staff::read(&state, &staff.actor, id).await,
        Err(e) => Err(e),
    };
    match view {
        Ok(v) => render_request(&state, &staff, &v),
        Err(e) => {
            staff
                .refused(&state, Action::RequestRead, About::Request(rid), &e)
                .await
        }
    }
}

fn render_request(state: &AppState, staff: &Staff, v: &RequestView) -> Response {
    let d = v.staff.as_ref();
    let mut timeline = vec![
        context! { what => "received", at => time(&v.received_at), by => d.map(|d| d.filed_by.clone()) },
    ];
    if let Some(at) = &v.verified_at {
        timeline.push(context! { what => "verified", at => time(at), by => d.and_then(|d| d.verified_by.clone()) });
    }
    if let Some(at) = d.and_then(|d| d.approved_at.as_ref()) {
        timeline.push(context! { what => "approved", at => time(at), by => d.and_then(|d| d.approved_by.clone()) });
    }
    if let Some(at) = d.and_then(|d| d.extended_at.as_ref()) {
        timeline.push(context! { what => "extended", at => time(at), note => d.and_then(|d| d.extension_reason.clone()) });
    }
    if let Some(at) = &v.responded_at {
        timeline.push(context! { what => "responded", at => time(at), status => v.status.clone() });
    }
    let open = !matches!(
        v.status.as_str(),
        "completed" | "partially_completed" | "denied" | "merged"
    );
    staff.render(
        state,
        "console/request.html",
        context! {
            id => v.id.to_string(),
            kind => v.kind.clone(),
            regulation => v.regulation.clone(),
            status => v.status.clone(),
            due_at => time(&v.due_at),
            extended => v.extended,
            overdue => d.is_some_and(|d| d.overdue),
            customer_id => d.and_then(|d| d.customer_id.map(|c| c.to_string())),
            timeline => timeline,
            result => v.result.as_ref().map(|r| Value::from(Serde(r))),
            denial => v.denial.as_ref().map(|r| Value::from(Serde(r))),
            open => open,
            reasons => DenialReason::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        },
    )
}

#[derive(Deserialize)]
struct ActionForm {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// Approve, deny or extend: the API's own use cases.
async fn act(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: StaffForm<ActionForm>,
) -> Response {
    let StaffForm { staff, form } = f;
    let Ok(rid) = Uuid::parse_str(&id) else {
        return no_such_request(&staff.page);
    };
    let (caller, none) = (&staff.actor, Answer::none());
    let action = match form.action.as_str() {
        "approve" => Action::RequestApproved,
        "deny" => Action::RequestDenied,
        _ => Action::RequestExtended,
    };
    let done = match form.action.as_str() {
        "approve" => staff::approve(&state, caller, parse_id(&id), &none)
            .await
            .map(|_| ()),
        "deny" => {
            let input = DenyBody {
                reason: nonempty(form.reason),
                note: nonempty(form.note),
            };
            staff::deny(&state, caller, parse_id(&id), &input, &none)
                .await
                .map(|_| ())
        }
        "extend" => {
            let input = ExtendBody {
                reason: nonempty(form.reason),
                due_at: None,
            };
            staff::extend(&state, caller, parse_id(&id), &input, &none)
                .await
                .map(|_| ())
        }
        _ => {
            return staff
                .page
                .error(StatusCode::BAD_REQUEST, "common-error-bad-form");
        }
    };
    match done {
        Ok(()) => staff.page.redirect(&format!("/console/requests/{id}")),
        Err(e) => staff.refused(&state, action, About::Request(rid), &e).await,
    }
}

async fn holds(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let customer = nonempty(
        q.iter()
            .find(|(k, _)| k == "customer_id")
            .map(|(_, v)| v.clone()),
    );
    let list = match customer.as_deref().map(parse_id).transpose() {
        Ok(id) => holds::list(&state, &staff.actor, id).await,
        Err(e) => Err(e),
    };
    match list {
        Ok(l) => staff.render(
            &state,
            "console/holds.html",
            context! {
                holds => Value::from(Serde(&l)),
                customer_id => customer.unwrap_or_default(),
                fields => state.policy.fields.keys().cloned().collect::<Vec<_>>(),
            },
        ),
        Err(e) => {
            staff
                .refused(&state, Action::LegalHoldList, About::Nothing, &e)
                .await
        }
    }
}

#[derive(Deserialize)]
struct HoldForm {
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    basis: String,
    /// A date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 time.
    #[serde(default)]
    review_at: String,
    /// Comma- or space-separated field names.
    #[serde(default)]
    fields: String,
}

async fn place_hold(State(state): State<AppState>, f: StaffForm<HoldForm>) -> Response {
    let StaffForm { staff, form } = f;
    let Ok(customer_id) = Uuid::parse_str(form.customer_id.trim()) else {
        return staff
            .page
            .error(StatusCode::BAD_REQUEST, "console-error-invalid");
    };
    let review = form.review_at.trim();
    let review_at = if review.len() == 10 {
        format!("{review}T00:00:00Z")
    } else {
        review.to_owned()
    };
    let input = holds::NewHold {
        customer_id,
        fields: form
            .fields
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        reason: form.reason.trim().to_owned(),
        basis: form.basis.trim().to_owned(),
        review_at,
        purpose: None,
    };
    match holds::create(&state, &staff.actor, &input, &Answer::none()).await {
        Ok(_) => staff
            .page
            .redirect(&format!("/console/holds?customer_id={customer_id}")),
        Err(e) => {
            staff
                .refused(&state, Action::LegalHoldCreate, About::Nothing, &e)
                .await
        }
    }
}

async fn release_hold(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: StaffForm<Empty>,
) -> Response {
    let StaffForm { staff, .. } = f;
    let released = match parse_id(&id) {
        Ok(id) => holds::release(&state, &staff.actor, id).await,
        Err(e) => Err(e),
    };
    match released {
        Ok(_) => staff.page.redirect("/console/holds"),
        Err(e) => {
            staff
                .refused(&state, Action::LegalHoldRelease, About::Nothing, &e)
                .await
        }
    }
}

async fn metrics(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let year = q
        .iter()
        .find(|(k, _)| k == "year")
        .and_then(|(_, v)| v.trim().parse::<i32>().ok());
    match staff::metrics(&state, &staff.actor, &MetricsQuery { year }).await {
        Ok(m) => staff.render(
            &state,
            "console/metrics.html",
            context! { metrics => Value::from(Serde(&m)), year => m.year },
        ),
        Err(e) => {
            staff
                .refused(&state, Action::RequestMetrics, About::Nothing, &e)
                .await
        }
    }
}

// ---------------------------------------------------------------------------
// Auditors: trail, access log, verify, downloads
// ---------------------------------------------------------------------------

/// The trail filters of `GET /v1/audit`, from the page's query string
/// (`lang` is the page's own).
const TRAIL_FILTERS: &[&str] = &[
    "customer_id",
    "actor",
    "action",
    "purpose",
    "decision",
    "from",
    "to",
    "after_seq",
    "limit",
];

async fn trail(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let kept: Vec<(String, String)> = q
        .into_iter()
        .filter(|(k, v)| TRAIL_FILTERS.contains(&k.as_str()) && !v.trim().is_empty())
        .collect();
    let raw: crate::audit::query::RawFilter =
        match serde_urlencoded::to_string(&kept).map(|s| serde_urlencoded::from_str(&s)) {
            Ok(Ok(r)) => r,
            _ => {
                return staff
                    .page
                    .error(StatusCode::BAD_REQUEST, "console-error-filter");
            }
        };
    let page = match audit::query_events(&state, &staff.actor, Ok(&raw)).await {
        Ok(p) => p,
        Err(e) => {
            return staff
                .refused(&state, Action::AuditQuery, About::Nothing, &e)
                .await;
        }
    };
    let value = |k: &str| {
        kept.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let next = page.next_after_seq.map(|n| {
        let mut qs: Vec<(String, String)> = kept
            .iter()
            .filter(|(k, _)| k != "after_seq")
            .cloned()
            .collect();
        qs.push(("after_seq".into(), n.to_string()));
        format!(
            "/console/audit?{}",
            serde_urlencoded::to_string(qs).unwrap_or_default()
        )
    });
    staff.render(
        &state,
        "console/trail.html",
        context! {
            events => Value::from(Serde(&page.events)),
            filters => TRAIL_FILTERS.iter().filter(|f| **f != "after_seq").map(|f| context! { name => *f, value => value(f) }).collect::<Vec<_>>(),
            next => next,
        },
    )
}

async fn access_log(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let get = |name: &str| nonempty(q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    let Some(customer) = get("customer_id") else {
        return staff.render(
            &state,
            "console/access_log.html",
            context! { customer_id => "", entries => Value::from(Vec::<Value>::new()), next => Value::from(()) },
        );
    };
    let id = match parse_id(&customer) {
        Ok(id) => id,
        Err(e) => {
            return staff
                .refused(&state, Action::AccessLogRead, About::Nothing, &e)
                .await;
        }
    };
    let params = audit::PageQuery {
        after_seq: get("after_seq"),
        limit: None,
    };
    match audit::access_log(&state, &staff.actor, id, Ok(&params)).await {
        Ok(l) => {
            let next = l.next_after_seq.map(|n| {
                format!(
                    "/console/audit/access-log?{}",
                    serde_urlencoded::to_string([
                        ("customer_id", customer.clone()),
                        ("after_seq", n.to_string())
                    ])
                    .unwrap_or_default()
                )
            });
            staff.render(
                &state,
                "console/access_log.html",
                context! { customer_id => customer, entries => Value::from(Serde(&l.entries)), next => next },
            )
        }
        Err(e) => {
            staff
                .refused(&state, Action::AccessLogRead, About::Customer(id), &e)
                .await
        }
    }
}

async fn verify(State(state): State<AppState>, staff: Staff) -> Response {
    match audit::verify_trail(&state, &staff.actor).await {
        Ok(report) => staff.render(
            &state,
            "console/verify.html",
            context! { report => Value::from(Serde(&report)) },
        ),
        Err(e) => {
            staff
                .refused(&state, Action::AuditVerify, About::Nothing, &e)
                .await
        }
    }
}

async fn public_key(State(state): State<AppState>, staff: Staff) -> Response {
    match audit::public_keys(&state, &staff.actor).await {
        Ok(keys) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"pii-vault-audit-public-keys.txt\"",
                ),
            ],
            keys.key_file,
        )
            .into_response(),
        Err(e) => {
            staff
                .refused(&state, Action::AuditPublicKey, About::Nothing, &e)
                .await
        }
    }
}

async fn export(State(state): State<AppState>, staff: Staff) -> Response {
    match audit::export(&state, &staff.actor, Ok(&audit::ExportQuery::default())).await {
        Ok(export) => ndjson_download(export),
        Err(e) => {
            staff
                .refused(&state, Action::AuditExport, About::Nothing, &e)
                .await
        }
    }
}

/// Sample variables of each console template (the foundation's test
/// renders every template in every language).
pub fn sample_context(template: &str, lang: Language) -> Value {
    let base = context! {
        lang => lang.as_str(),
        langs => Vec::<Value>::new(),
        csrf => "0".repeat(64),
        staff_csrf => "0".repeat(64),
        gpc => false,
        path => "/console/",
        user_role => "dpo",
        can_process => true,
        can_audit => true,
        can_hold => true,
    };
    let id = Uuid::nil().to_string();
    let extra = match template {
        "console/sign_in.html" => context! { error => "console-sign-in-wrong" },
        "console/error.html" => context! { status => 403, message => "console-error-forbidden" },
        "console/queue.html" => context! {
            requests => vec![context! { id => id.clone(), kind => "erasure", regulation => "gdpr", status => "awaiting_approval", received_at => "2026-01-01 10:00 UTC", due_at => "2026-02-01 10:00 UTC", overdue => true, extended => true }],
            statuses => Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            kinds => Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            status => "awaiting_approval", kind => "erasure", overdue => true,
            next => "/console/requests?after=x",
        },
        "console/request.html" => context! {
            id => id.clone(), kind => "erasure", regulation => "gdpr", status => "awaiting_approval",
            due_at => "2026-02-01 10:00 UTC", extended => true, overdue => true, customer_id => id.clone(),
            timeline => vec![
                context! { what => "received", at => "2026-01-01 10:00 UTC", by => "data_subject" },
                context! { what => "verified", at => "2026-01-01 10:05 UTC", by => "code" },
                context! { what => "approved", at => "2026-01-02 10:00 UTC", by => "u" },
                context! { what => "extended", at => "2026-01-02 10:00 UTC", note => "n" },
                context! { what => "responded", at => "2026-01-03 10:00 UTC", status => "denied" },
            ],
            result => context! { erasure => "erased" },
            denial => context! { reason => "excessive" },
            open => true,
            reasons => DenialReason::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        },
        "console/holds.html" => context! {
            holds => vec![context! { id => id.clone(), customer_id => id.clone(), fields => vec!["email"], reason => "litigation", basis => "legal_claims", review_at => "2027-01-01T00:00:00Z", review_due => false, active => true, created_by => "u", created_at => "2026-01-01T00:00:00Z", released_at => Value::from(()) }],
            customer_id => id.clone(),
            fields => vec!["email", "phone"],
        },
        "console/metrics.html" => context! {
            year => 2026,
            metrics => context! {
                year => 2026,
                kinds => context! { erasure => context! { received => 1, completed => 1, partially_completed => 0, denied => 0, open => 0, median_days => 2.0 } },
                total => context! { received => 1, completed => 1, partially_completed => 0, denied => 0, open => 0, median_days => 2.0 },
            },
        },
        "console/trail.html" => context! {
            events => vec![context! { seq => 1, at => "2026-01-01T10:00:00.000000Z", actor => "u", role => "dpo", action => "request.approved", purpose => Value::from(()), customer_id => id.clone(), fields => vec!["email"], decision => "allowed", reasons => context! { a => "b" } }],
            filters => TRAIL_FILTERS.iter().map(|f| context! { name => *f, value => "" }).collect::<Vec<_>>(),
            next => "/console/audit?after_seq=1",
        },
        "console/access_log.html" => context! {
            customer_id => id.clone(),
            entries => vec![context! { seq => 1, at => "2026-01-01T10:00:00.000000Z", actor => "u", role => "helpdesk", action => "customer.read", purpose => "support", fields => vec!["email"], decision => "allowed" }],
            next => "/console/audit/access-log?after_seq=1",
        },
        "console/verify.html" => context! {
            report => context! { ok => false, events => 10, head_seq => 10, head => "ab", checkpoints => 1, checkpoint => context! { seq => 5, kid => "k", at => "2026-01-01T10:00:00Z" }, first_bad_seq => 7, reason => "hash mismatch" },
        },
        _ => context! {},
    };
    context! { ..extra, ..base }
}
