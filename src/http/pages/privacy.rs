//! The privacy center, `/privacy/`: what the controller holds and why, the
//! request form, the verification code, and the request's status. No
//! account: the customer is identified by a searchable field and the code
//! the outbox delivers; the request token lives in the `pv_request` cookie
//! (HttpOnly, SameSite=Strict, `Path=/privacy/`, Secure under TLS), never in
//! a URL or in page text.
//!
//! Every step is the API's own function: filing is
//! `http::requests::file_by_customer` (the same no-enumeration promise,
//! the same rate limits, `Sec-GPC: 1` honoured), verification
//! `verify_request`, the status `read`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use minijinja::{Value, context};
use uuid::Uuid;

use super::cookies::{self, Cookie};
use super::{Form, Page};
use crate::actor::Actor;
use crate::answer::Answer;
use crate::error::ServiceError;
use crate::http::error::status_of;
use crate::http::requests::{
    self as api, FileRequest, Identifier, RectificationChanges, RequestAuth, VerifyBody,
};
use crate::language::Language;
use crate::policy;
use crate::requests::flow;
use crate::requests::lifecycle::{Kind, Regulation};
use crate::state::AppState;

/// The cookie holding the request token.
pub const REQUEST_COOKIE: &str = "pv_request";
/// Its path: the privacy center only.
pub const REQUEST_COOKIE_PATH: &str = "/privacy/";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/privacy", get(to_index))
        .route("/privacy/", get(index))
        .route("/privacy/request", get(request_form).post(file))
        .route("/privacy/requests/{id}", get(status))
        .route(
            "/privacy/requests/{id}/verify",
            get(verify_form).post(verify),
        )
}

async fn to_index(page: Page) -> Response {
    page.redirect("/privacy/")
}

// ---------------------------------------------------------------------------
// What we hold and why
// ---------------------------------------------------------------------------

async fn index(State(state): State<AppState>, page: Page) -> Response {
    page.render(&state, StatusCode::OK, "privacy/index.html", context! {})
}

// ---------------------------------------------------------------------------
// Filing
// ---------------------------------------------------------------------------

/// The form's choices: every API kind and both regulations.
fn form_context(state: &AppState, kind: &str, regulation: &str, error: Option<&str>) -> Value {
    let objectable: Vec<String> = state
        .policy
        .purposes
        .values()
        .filter(|p| {
            matches!(
                p.basis,
                policy::LegalBasis::LegitimateInterest
                    | policy::LegalBasis::PublicTask
                    | policy::LegalBasis::Consent
            )
        })
        .map(|p| p.name.clone())
        .collect();
    let rectifiable: Vec<String> = state.policy.fields.keys().cloned().collect();
    context! {
        kinds => Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        regulations => Regulation::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        kind => kind.to_owned(),
        regulation => regulation.to_owned(),
        objectable => objectable,
        rectifiable => rectifiable,
        error => error.map(str::to_owned),
    }
}

async fn request_form(
    State(state): State<AppState>,
    page: Page,
    axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    let pick = q.iter().find(|(k, _)| k == "kind").map(|(_, v)| v.as_str());
    let kind = pick.and_then(Kind::parse).map_or("access", Kind::as_str);
    let regulation = if matches!(kind, "opt_out_sale" | "limit_sensitive") {
        "ccpa"
    } else {
        "gdpr"
    };
    page.render(
        &state,
        StatusCode::OK,
        "privacy/request.html",
        form_context(&state, kind, regulation, None),
    )
}

/// The catalog key explaining `e` to the customer.
fn error_key(e: &ServiceError) -> &'static str {
    match e.code {
        "unknown_kind" => "privacy-error-kind",
        "regulation_required" | "unknown_regulation" => "privacy-error-regulation",
        "identifier_required" | "invalid_value" => "privacy-error-identifier",
        "purpose_required" | "unknown_purpose" | "objection_not_applicable" => {
            "privacy-error-purpose"
        }
        "changes_required" | "unknown_field" => "privacy-error-changes",
        "rate_limited" | "too_many_attempts" => "privacy-error-rate-limited",
        "invalid_code" => "privacy-error-code",
        "code_expired" => "privacy-error-code-expired",
        _ if e.kind.is_server_side() => "common-error-internal",
        _ => "privacy-error-invalid",
    }
}

/// The form as the API's body: the corrected values of a rectification
/// come from `change_<field>` inputs (typed in the form, posted in the
/// body, never in a URL).
fn filing(fields: &[(String, String)], lang: Language) -> FileRequest {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let kind = get("kind").unwrap_or_default();
    let identifier = match (get("email"), get("phone")) {
        (Some(v), _) => Some(Identifier {
            field: "email".into(),
            value: v,
        }),
        (None, Some(v)) => Some(Identifier {
            field: "phone".into(),
            value: v,
        }),
        (None, None) => None,
    };
    let changes = (kind == Kind::Rectification.as_str()).then(|| RectificationChanges {
        fields: fields
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("change_")?;
                let v = v.trim();
                (!v.is_empty()).then(|| {
                    (
                        name.to_owned(),
                        Some(crate::customers::UpdateField {
                            value: v.to_owned(),
                            purposes: None,
                        }),
                    )
                })
            })
            .collect(),
    });
    FileRequest {
        purpose: (kind == Kind::Objection.as_str())
            .then(|| get("purpose"))
            .flatten(),
        kind,
        regulation: get("regulation"),
        identifier,
        customer_id: None,
        verified_by: None,
        channel: Some("web".into()),
        lift: false,
        changes,
        language: Some(lang.as_str().into()),
    }
}

async fn file(
    State(state): State<AppState>,
    mut page: Page,
    headers: axum::http::HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let input = filing(&fields, page.lang);
    let filer = Actor::data_subject(&page.request_id).from_addr(page.client.clone());
    match api::file_by_customer(&state, &filer, &headers, &input, &Answer::none()).await {
        Ok(filed) => {
            let Some(token) = filed.token else {
                return page.error(StatusCode::INTERNAL_SERVER_ERROR, "common-error-internal");
            };
            let days = u64::from(state.settings.request_token_ttl_days) + 90;
            page.set_cookie(
                Cookie::new(REQUEST_COOKIE, token, REQUEST_COOKIE_PATH).max_age(days * 86_400),
            );
            let id = filed.request.id;
            if filed.request.status == crate::requests::lifecycle::Status::Verifying {
                page.redirect(&format!("/privacy/requests/{id}/verify"))
            } else {
                page.redirect(&format!("/privacy/requests/{id}"))
            }
        }
        Err(e) => {
            let status = status_of(e.kind);
            let ctx = form_context(
                &state,
                &input.kind,
                input.regulation.as_deref().unwrap_or("gdpr"),
                Some(error_key(&e)),
            );
            page.render(&state, status, "privacy/request.html", ctx)
        }
    }
}

// ---------------------------------------------------------------------------
// The request token
// ---------------------------------------------------------------------------

/// The holder of the request token in the cookie, for request `id`; an
/// error page when there is none or it is for another request.
async fn holder(
    state: &AppState,
    page: &Page,
    headers: &axum::http::HeaderMap,
    id: &str,
) -> Result<(Uuid, RequestAuth), Response> {
    let Ok(id) = id.parse::<Uuid>() else {
        return Err(page.error(StatusCode::NOT_FOUND, "privacy-error-no-request"));
    };
    let Some(token) = cookies::get(headers, REQUEST_COOKIE) else {
        return Err(page.error(StatusCode::FORBIDDEN, "privacy-error-no-token"));
    };
    let own = flow::request_for_token(state, token)
        .await
        .map_err(|_| page.error(StatusCode::FORBIDDEN, "privacy-error-no-token"))?;
    if own != id {
        return Err(page.error(StatusCode::FORBIDDEN, "privacy-error-no-token"));
    }
    let actor = Actor::data_subject(&page.request_id).from_addr(page.client.clone());
    Ok((id, RequestAuth::Token(own, actor)))
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

async fn verify_form(
    State(state): State<AppState>,
    page: Page,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (id, _) = match holder(&state, &page, &headers, &id).await {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    page.render(
        &state,
        StatusCode::OK,
        "privacy/verify.html",
        context! { id => id.to_string(), error => None::<&str> },
    )
}

#[derive(serde::Deserialize)]
struct CodeForm {
    code: String,
}

async fn verify(
    State(state): State<AppState>,
    page: Page,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CodeForm>,
) -> Response {
    let (id, auth) = match holder(&state, &page, &headers, &id).await {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    let body = VerifyBody {
        code: Some(form.code.trim().to_owned()),
        method: None,
    };
    match api::verify_request(&state, &auth, id, body, &Answer::none()).await {
        Ok(_) => page.redirect(&format!("/privacy/requests/{id}")),
        // Too many wrong codes deny the request: its page says so.
        Err(e) if e.code == "too_many_attempts" => {
            page.redirect(&format!("/privacy/requests/{id}"))
        }
        Err(e) => page.render(
            &state,
            status_of(e.kind),
            "privacy/verify.html",
            context! { id => id.to_string(), error => error_key(&e) },
        ),
    }
}

// ---------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------

async fn status(
    State(state): State<AppState>,
    page: Page,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (id, auth) = match holder(&state, &page, &headers, &id).await {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    match api::read(&state, &auth, id).await {
        Ok(view) => page.render(
            &state,
            StatusCode::OK,
            "privacy/status.html",
            status_context(&view),
        ),
        Err(e) => page.error(status_of(e.kind), error_key(&e)),
    }
}

/// A time as the pages show it: `2026-03-01 14:05 UTC`.
fn shown(rfc3339: &str) -> String {
    rfc3339
        .get(..16)
        .map(|s| format!("{} UTC", s.replace('T', " ")))
        .unwrap_or_else(|| rfc3339.to_owned())
}

fn status_context(view: &api::RequestView) -> Value {
    let retained: Vec<Value> = view
        .result
        .as_ref()
        .and_then(|r| r.get("retained"))
        .and_then(|r| r.as_array())
        .map(|list| {
            list.iter()
                .map(|k| {
                    context! {
                        field => k.get("field").and_then(|v| v.as_str()).unwrap_or_default(),
                        purpose => k.get("purpose").and_then(|v| v.as_str()).unwrap_or_default(),
                        basis => k.get("basis").and_then(|v| v.as_str()).unwrap_or_default(),
                        until => k.get("until").and_then(|v| v.as_str()).map(shown).unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let denial = view.denial.as_ref().map(|d| {
        context! {
            reason => d.get("reason").and_then(|v| v.as_str()).unwrap_or("other"),
            note => d.get("note").and_then(|v| v.as_str()),
            complaint => d.get("complaint").is_some(),
            contact => d.pointer("/complaint/contact").and_then(|v| v.as_str()),
        }
    });
    let exportable = matches!(view.kind.as_str(), "access" | "portability")
        && matches!(view.status.as_str(), "completed" | "partially_completed");
    context! {
        id => view.id.to_string(),
        kind => view.kind.clone(),
        regulation => view.regulation.clone(),
        status => view.status.clone(),
        received_at => shown(&view.received_at),
        due_at => shown(&view.due_at),
        extended => view.extended,
        responded_at => view.responded_at.as_deref().map(shown),
        verified => view.verified_at.is_some(),
        erasure => view.result.as_ref().and_then(|r| r.get("status")).and_then(|v| v.as_str()),
        retained => retained,
        denial => denial,
        exportable => exportable,
    }
}

/// Example variables for each template, for the render test.
#[cfg(test)]
pub fn sample_context(template: &str, lang: Language) -> Value {
    let base = context! {
        lang => lang.as_str(),
        langs => Vec::<Value>::new(),
        csrf => "0".repeat(64),
        gpc => true,
        path => "/privacy/",
    };
    let extra = match template {
        "error.html" => context! { status => 403, message => "common-error-csrf" },
        "privacy/request.html" => context! {
            kinds => Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            regulations => vec!["gdpr", "ccpa"],
            kind => "rectification",
            regulation => "gdpr",
            objectable => vec!["marketing"],
            rectifiable => vec!["email", "phone"],
            error => "privacy-error-identifier",
        },
        "privacy/verify.html" => {
            context! { id => Uuid::nil().to_string(), error => "privacy-error-code" }
        }
        "privacy/status.html" => context! {
            id => Uuid::nil().to_string(),
            kind => "erasure",
            regulation => "gdpr",
            status => "partially_completed",
            received_at => "2026-01-01 10:00 UTC",
            due_at => "2026-02-01 10:00 UTC",
            extended => true,
            responded_at => "2026-01-03 10:00 UTC",
            verified => true,
            erasure => "partially_erased",
            retained => vec![context! { field => "email", purpose => "billing", basis => "legal_obligation", until => "2036-01-01 10:00 UTC" }],
            denial => context! { reason => "excessive", note => "n", complaint => true, contact => "dpo@example.com" },
            exportable => true,
        },
        _ => context! {},
    };
    context! { ..extra, ..base }
}
