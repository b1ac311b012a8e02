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
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
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
use crate::requests::view::RequestView;
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
        .route("/privacy/requests/{id}/export", get(export_page))
        .route("/privacy/requests/{id}/export.json", get(export_json))
        .route(
            "/privacy/requests/{id}/consents",
            get(consents_page).post(change_consent),
        )
        .route(
            "/privacy/requests/{id}/consents/explicit",
            get(explicit_page),
        )
}

async fn to_index(page: Page) -> Response {
    page.redirect("/privacy/")
}

// ---------------------------------------------------------------------------
// What we hold and why
// ---------------------------------------------------------------------------

async fn index(State(state): State<AppState>, page: Page) -> Response {
    page.render(
        &state,
        StatusCode::OK,
        "privacy/index.html",
        index_context(&state.policy, page.lang),
    )
}

/// Everything the policy says a customer should know (GDPR Art. 13/14,
/// CCPA notice at collection): controller, contacts, purposes with their
/// description, legal basis and retention, the data held and for what,
/// the recipients.
fn index_context(policy: &policy::Policy, lang: Language) -> Value {
    let retention = |r: &policy::Retention| match r {
        policy::Retention::Days(n) => context! { unit => "days", n => *n },
        policy::Retention::Months(n) => context! { unit => "months", n => *n },
        policy::Retention::Years(n) => context! { unit => "years", n => *n },
    };
    let purposes: Vec<Value> = policy
        .purposes
        .values()
        .map(|p| {
            context! {
                name => p.name.clone(),
                description => p.description_in(lang.as_str()).to_owned(),
                basis => p.basis.as_str(),
                retention => retention(&p.retention),
                condition => p.special_category_condition.map(|c| c.as_str()),
                sale_or_sharing => p.sale_or_sharing,
            }
        })
        .collect();
    let fields: Vec<Value> = policy
        .fields
        .values()
        .map(|f| {
            context! {
                name => f.name.clone(),
                category => f.category.clone(),
                sensitive => f.sensitive,
                special_category => f.special_category,
                purposes => f.purposes.iter().map(|p| {
                    policy.purpose(p).map_or(p.clone(), |d| d.description_in(lang.as_str()).to_owned())
                }).collect::<Vec<_>>(),
            }
        })
        .collect();
    let recipients: Vec<String> = policy
        .roles
        .values()
        .filter(|r| r.recipient)
        .map(|r| r.name.clone())
        .collect();
    let c = &policy.controller;
    context! {
        controller => context! {
            name => c.name.clone(),
            contact => c.contact.clone(),
            address => c.address.clone(),
            dpo_contact => c.dpo_contact.clone(),
        },
        purposes => purposes,
        fields => fields,
        recipients => recipients,
        sells_or_shares => policy.purposes.values().any(|p| p.sale_or_sharing),
    }
}

// ---------------------------------------------------------------------------
// Filing
// ---------------------------------------------------------------------------

/// The form's choices: every API kind and both regulations.
fn form_context(
    state: &AppState,
    lang: Language,
    kind: &str,
    regulation: &str,
    error: Option<&str>,
) -> Value {
    let objectable: Vec<Value> = state
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
        .map(|p| context! { name => p.name.clone(), description => p.description_in(lang.as_str()).to_owned() })
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
        form_context(&state, page.lang, kind, regulation, None),
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
                page.lang,
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

/// A page request by the holder of the request token in the cookie, for
/// the request `{id}` of the path; the error page when there is no token
/// or it is for another request.
struct Holder {
    page: Page,
    id: Uuid,
    auth: RequestAuth,
}

impl FromRequestParts<AppState> for Holder {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let page = Page::from_request_parts(parts, state).await?;
        let id = Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|Path(id)| id.parse::<Uuid>().ok());
        let Some(id) = id else {
            return Err(page.error(StatusCode::NOT_FOUND, "privacy-error-no-request"));
        };
        let refused = |page: &Page| page.error(StatusCode::FORBIDDEN, "privacy-error-no-token");
        let Some(token) = cookies::get(&parts.headers, REQUEST_COOKIE) else {
            return Err(refused(&page));
        };
        match flow::request_for_token(state, token).await {
            Ok(own) if own == id => {}
            _ => return Err(refused(&page)),
        }
        let actor = Actor::data_subject(&page.request_id).from_addr(page.client.clone());
        Ok(Holder {
            auth: RequestAuth::Token(id, actor),
            page,
            id,
        })
    }
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

async fn verify_form(State(state): State<AppState>, Holder { page, id, .. }: Holder) -> Response {
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
    Holder { page, id, auth, .. }: Holder,
    Form(form): Form<CodeForm>,
) -> Response {
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

async fn status(State(state): State<AppState>, Holder { page, id, auth, .. }: Holder) -> Response {
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

// ---------------------------------------------------------------------------
// The export: download and readable view
// ---------------------------------------------------------------------------

async fn export_json(
    State(state): State<AppState>,
    Holder { page, id, auth, .. }: Holder,
) -> Response {
    match api::export(&state, &auth, id).await {
        Ok(package) => {
            let body = serde_json::to_vec_pretty(&package).unwrap_or_default();
            let disposition = format!("attachment; filename=\"personal-data-{id}.json\"");
            let mut resp = (
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&disposition) {
                resp.headers_mut()
                    .insert(axum::http::header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(e) => page.error(status_of(e.kind), export_error(&e)),
    }
}

fn export_error(e: &ServiceError) -> &'static str {
    match e.code {
        "export_not_ready" | "not_an_export" => "privacy-error-export-not-ready",
        _ => error_key(e),
    }
}

async fn export_page(
    State(state): State<AppState>,
    Holder { page, id, auth, .. }: Holder,
) -> Response {
    match api::export(&state, &auth, id).await {
        Ok(package) => {
            let descriptions: std::collections::BTreeMap<String, String> = state
                .policy
                .purposes
                .values()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.description_in(page.lang.as_str()).to_owned(),
                    )
                })
                .collect();
            let data = package.get("data").cloned().unwrap_or_default();
            let ctx = context! {
                id => id.to_string(),
                package => Value::from(minijinja::value::Serde(&package)),
                data => Value::from(minijinja::value::Serde(&data)),
                descriptions => descriptions,
                access_log_shown => 50,
            };
            page.render(&state, StatusCode::OK, "privacy/export.html", ctx)
        }
        Err(e) => page.error(status_of(e.kind), export_error(&e)),
    }
}

// ---------------------------------------------------------------------------
// Consents
// ---------------------------------------------------------------------------

/// A [`Holder`] of a verified request: the customer it names and its
/// regulation; an error page otherwise.
struct Subject {
    holder: Holder,
    customer: Uuid,
    regulation: Regulation,
}

impl FromRequestParts<AppState> for Subject {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let holder = Holder::from_request_parts(parts, state).await?;
        let page = &holder.page;
        let r = api::own_request(state, &holder.auth, holder.id)
            .await
            .map_err(|e| page.error(status_of(e.kind), error_key(&e)))?;
        let customer = flow::subject_customer(state, &r)
            .await
            .map_err(|_| page.error(StatusCode::FORBIDDEN, "privacy-error-not-verified"))?;
        Ok(Subject {
            regulation: r.regulation,
            customer,
            holder,
        })
    }
}

fn holder_actor(auth: &RequestAuth) -> &Actor {
    match auth {
        RequestAuth::Token(_, a) | RequestAuth::Staff(a) => a,
    }
}

fn sha256_hex(text: &str) -> String {
    crate::crypto::sha256_hex(text)
}

/// The purposes on the consents page: those with a notice to agree to,
/// and any the customer has a consent state for.
fn consents_context(
    state: &AppState,
    lang: Language,
    id: Uuid,
    consents: &crate::customers::consents::Consents,
) -> Value {
    let policy = &state.policy;
    let mut names: Vec<String> = policy
        .purposes
        .values()
        .filter(|p| p.consent_notice.is_some())
        .map(|p| p.name.clone())
        .collect();
    for c in &consents.current {
        if !names.contains(&c.purpose) {
            names.push(c.purpose.clone());
        }
    }
    let items: Vec<Value> = names
        .iter()
        .filter_map(|name| policy.purpose(name))
        .map(|p| {
            let current = consents.current.iter().find(|c| c.purpose == p.name);
            let status = current.map(|c| match c.status {
                crate::consent::ConsentStatus::Granted => "granted",
                crate::consent::ConsentStatus::Withdrawn => "withdrawn",
                crate::consent::ConsentStatus::Expired => "expired",
            });
            // The notice of the latest grant, found by its hash among the
            // policy's texts of that version.
            let grant = consents
                .events
                .iter()
                .filter(|e| e.purpose == p.name && e.action == "grant")
                .max_by_key(|e| e.at.clone());
            let agreed = grant.map(|g| {
                let text = p
                    .consent_notice
                    .as_ref()
                    .filter(|n| n.version == g.notice_version)
                    .and_then(|n| {
                        n.all_texts()
                            .find(|(_, t)| sha256_hex(t) == g.notice_text_sha256)
                            .map(|(l, t)| (l.to_owned(), t.to_owned()))
                    });
                context! {
                    version => g.notice_version.clone(),
                    sha256 => g.notice_text_sha256.clone(),
                    text => text.as_ref().map(|(_, t)| t.clone()),
                    text_lang => text.as_ref().map(|(l, _)| l.clone()),
                    explicit => g.explicit,
                    at => shown(&g.at),
                    channel => g.channel.clone(),
                }
            });
            let notice = p.consent_notice.as_ref();
            let explicit_needed = p.special_category_condition
                == Some(policy::SpecialCategoryCondition::ExplicitConsent);
            context! {
                purpose => p.name.clone(),
                description => p.description_in(lang.as_str()).to_owned(),
                status => status,
                since => current.map(|c| shown(&c.since)),
                explicit => current.is_some_and(|c| c.explicit),
                agreed => agreed,
                notice => notice.map(|n| n.text(lang.as_str()).to_owned()),
                notice_version => notice.map(|n| n.version.clone()),
                explicit_needed => explicit_needed,
                grantable => notice.is_some(),
            }
        })
        .collect();
    context! { id => id.to_string(), items => items, done => None::<String> }
}

async fn consents_page(
    State(state): State<AppState>,
    Subject {
        holder: Holder { page, id, auth, .. },
        customer,
        ..
    }: Subject,
) -> Response {
    match crate::customers::consents::list_own(&state, holder_actor(&auth), customer).await {
        Ok(consents) => page.render(
            &state,
            StatusCode::OK,
            "privacy/consents.html",
            consents_context(&state, page.lang, id, &consents),
        ),
        Err(e) => page.error(status_of(e.kind), error_key(&e)),
    }
}

/// The confirmation step of explicit consent (GDPR Art. 9(2)(a)): the
/// specific statement, and a box to tick before it is recorded.
async fn explicit_page(
    State(state): State<AppState>,
    Subject {
        holder: Holder { page, id, .. },
        ..
    }: Subject,
    axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    let purpose = q
        .iter()
        .find(|(k, _)| k == "purpose")
        .map(|(_, v)| v.as_str());
    let Some((p, statement)) = purpose.and_then(|p| state.policy.purpose(p)).and_then(|p| {
        Some((
            p,
            p.consent_notice
                .as_ref()?
                .explicit_statement(page.lang.as_str())?,
        ))
    }) else {
        return page.error(StatusCode::NOT_FOUND, "privacy-error-invalid");
    };
    page.render(
        &state,
        StatusCode::OK,
        "privacy/explicit.html",
        context! {
            id => id.to_string(),
            purpose => p.name.clone(),
            description => p.description_in(page.lang.as_str()).to_owned(),
            statement => statement.to_owned(),
            error => None::<&str>,
        },
    )
}

#[derive(serde::Deserialize)]
struct ConsentForm {
    purpose: String,
    action: String,
    #[serde(default)]
    explicit: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

/// Grant or withdraw in one click; a purpose relying on explicit consent
/// is granted only from its confirmation step, with the box ticked.
async fn change_consent(
    State(state): State<AppState>,
    Subject {
        holder: Holder { page, id, auth, .. },
        customer,
        regulation,
        ..
    }: Subject,
    Form(form): Form<ConsentForm>,
) -> Response {
    let Some(p) = state.policy.purpose(&form.purpose) else {
        return page.error(StatusCode::BAD_REQUEST, "privacy-error-invalid");
    };
    let lang = page.lang.as_str();
    let explicit_needed =
        p.special_category_condition == Some(policy::SpecialCategoryCondition::ExplicitConsent);
    let action = match form.action.as_str() {
        "grant" => crate::customers::consents::ConsentAction::Grant,
        "withdraw" => crate::customers::consents::ConsentAction::Withdraw,
        _ => return page.error(StatusCode::BAD_REQUEST, "privacy-error-invalid"),
    };
    let explicit = action == crate::customers::consents::ConsentAction::Grant && explicit_needed;
    if explicit
        && (form.explicit.as_deref() != Some("true") || form.confirm.as_deref() != Some("yes"))
    {
        let Some(statement) = p
            .consent_notice
            .as_ref()
            .and_then(|n| n.explicit_statement(lang))
        else {
            return page.error(StatusCode::BAD_REQUEST, "privacy-error-invalid");
        };
        return page.render(
            &state,
            StatusCode::BAD_REQUEST,
            "privacy/explicit.html",
            context! {
                id => id.to_string(),
                purpose => p.name.clone(),
                description => p.description_in(lang).to_owned(),
                statement => statement.to_owned(),
                error => "privacy-error-confirm",
            },
        );
    }
    // The notice shown: the explicit statement for an explicit grant,
    // else the purpose's notice; a withdrawal without a notice names the
    // notice of the grant it withdraws.
    let shown_text = match (&p.consent_notice, explicit) {
        (Some(n), true) => n
            .explicit_statement(lang)
            .map(|t| (n.version.clone(), sha256_hex(t))),
        (Some(n), false) => Some((n.version.clone(), sha256_hex(n.text(lang)))),
        (None, _) => None,
    };
    let shown_text = match shown_text {
        Some(t) => t,
        None if action == crate::customers::consents::ConsentAction::Withdraw => {
            match crate::customers::consents::list_own(&state, holder_actor(&auth), customer).await
            {
                Ok(c) => match c
                    .events
                    .iter()
                    .rfind(|e| e.purpose == p.name && e.action == "grant")
                {
                    Some(g) => (g.notice_version.clone(), g.notice_text_sha256.clone()),
                    None => return page.error(StatusCode::BAD_REQUEST, "privacy-error-invalid"),
                },
                Err(e) => return page.error(status_of(e.kind), error_key(&e)),
            }
        }
        None => return page.error(StatusCode::BAD_REQUEST, "privacy-error-invalid"),
    };
    let input = crate::customers::consents::ConsentRequest {
        purpose: p.name.clone(),
        action,
        notice_version: shown_text.0,
        notice_text_sha256: shown_text.1,
        language: lang.to_owned(),
        jurisdiction: match regulation {
            Regulation::Gdpr => "EU".into(),
            Regulation::Ccpa => "US-CA".into(),
        },
        channel: "web".into(),
        explicit,
    };
    match crate::customers::consents::record_own(&state, holder_actor(&auth), customer, &input)
        .await
    {
        Ok(_) => page.redirect(&format!("/privacy/requests/{id}/consents")),
        Err(e) => page.error(status_of(e.kind), error_key(&e)),
    }
}

/// A time as the pages show it: `2026-03-01 14:05 UTC`.
fn shown(rfc3339: &str) -> String {
    super::render::when(rfc3339)
}

fn status_context(view: &RequestView) -> Value {
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
            objectable => vec![context! { name => "marketing", description => "Offers" }],
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
        "privacy/index.html" => {
            let policy = policy::Policy::load_dir(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            index_context(&policy, lang)
        }
        "privacy/export.html" => context! {
            id => Uuid::nil().to_string(),
            package => Value::from(minijinja::value::Serde(if lang == Language::It { serde_json::json!({
                "generated_at": "2026-01-01T00:00:00Z",
                "controller": {"name": "C", "contact": "c@example.com"},
            }) } else { serde_json::json!({
                "generated_at": "2026-01-01T00:00:00Z",
                "controller": {"name": "C", "contact": "c@example.com"},
                "erasure": {"status": "erased"},
                "consents": {"current": [{"purpose": "marketing", "status": "granted", "since": "2026"}]},
                "recipients": [{"recipient": "billing_system", "disclosures": []}],
                "access_log": [{"at": "2026", "actor_role": "helpdesk", "purpose": null, "fields": ["email"]}],
            }) })),
            data => Value::from(minijinja::value::Serde(serde_json::json!([{
                "field": "email", "value": "ada@example.com", "category": "user.contact.email",
                "collected_at": "2026", "channel": "chat",
                "purposes": [{"purpose": "support", "description": "S", "legal_basis": "contract",
                              "expires_at": null, "special_category_condition": "explicit_consent"},
                             {"purpose": "billing", "description": "B", "legal_basis": "legal_obligation",
                              "expires_at": "2036"}]
            }]))),
            descriptions => context! { support => "Support" },
            access_log_shown => 50,
        },
        "privacy/consents.html" => context! {
            id => Uuid::nil().to_string(),
            done => None::<String>,
            items => vec![
                context! { purpose => "marketing", description => "Offers", status => "granted",
                    since => "2026", explicit => false,
                    agreed => context! { version => "2026-01", sha256 => "00", text => "T", text_lang => "en", explicit => false, at => "2026", channel => "web" },
                    notice => "T", notice_version => "2026-01", explicit_needed => false, grantable => true },
                context! { purpose => "support", description => "Support", status => "withdrawn",
                    since => "2026", explicit => false,
                    agreed => context! { version => "2026-01", sha256 => "00", text => None::<String>, text_lang => None::<String>, explicit => true, at => "2026", channel => "web" },
                    notice => "T", notice_version => "2026-01", explicit_needed => true, grantable => true },
                context! { purpose => "partner_sharing", description => "Partners", status => None::<String>,
                    since => None::<String>, explicit => false, agreed => None::<String>,
                    notice => "T", notice_version => "2026-01", explicit_needed => false, grantable => true },
            ],
        },
        "privacy/explicit.html" => context! {
            id => Uuid::nil().to_string(), purpose => "support", description => "Support",
            statement => "I explicitly consent", error => "privacy-error-confirm",
        },
        _ => context! {},
    };
    context! { ..extra, ..base }
}
