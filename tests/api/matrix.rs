//! The access matrix: every route of the OpenAPI document × every role of
//! the default policy × {no purpose, wrong purpose, right purpose} (on
//! purpose-bound routes) × {one customer, another customer} (on routes
//! about a customer or a request), with the expected answer per cell.
//! A route missing from the table, or a table row for a route that no
//! longer exists, fails the test.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const ROLES: &[&str] = &[
    "helpdesk",
    "marketing_tool",
    "billing_system",
    "dpo",
    "auditor",
    "notifier",
    "admin",
];

/// Who may call a route.
#[derive(Clone, Copy)]
enum Access {
    /// No token needed.
    Public,
    /// Any authenticated caller.
    AnyRole,
    /// Only these roles (403 for the others).
    Roles(&'static [&'static str]),
    /// Purpose-bound personal data: these roles, each with the purpose it
    /// may use here. Others get 403 whatever the purpose.
    Purpose(&'static [(&'static str, &'static str)]),
}

/// What a path parameter refers to.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    None,
    Customer,
    Request,
}

struct Row {
    method: Method,
    template: &'static str,
    access: Access,
    scope: Scope,
    body: Option<fn(&str) -> Value>,
}

const READERS: &[(&str, &str)] = &[
    ("helpdesk", "support"),
    ("marketing_tool", "marketing"),
    ("billing_system", "billing"),
    ("dpo", "legal.claims"),
];
const WRITERS: &[(&str, &str)] = &[("helpdesk", "support"), ("billing_system", "billing")];
/// The fixture's email is collected for support and billing: only those
/// readers reach the single field (the others get 403
/// `not_collected_for_purpose`).
const EMAIL_READERS: &[(&str, &str)] = &[("helpdesk", "support"), ("billing_system", "billing")];
/// A declared purpose no role may use.
const WRONG_PURPOSE: &str = "analytics";

fn table() -> Vec<Row> {
    use Access::*;
    use Scope as S;
    let row = |method: Method, template, access, scope, body: Option<fn(&str) -> Value>| Row {
        method,
        template,
        access,
        scope,
        body,
    };
    vec![
        row(Method::POST, "/v1/token", Public, S::None, None),
        row(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            Public,
            S::None,
            None,
        ),
        row(Method::GET, "/.well-known/jwks.json", Public, S::None, None),
        row(
            Method::POST,
            "/v1/token/introspect",
            AnyRole,
            S::None,
            Some(|_| json!({"token": "not-a-token"})),
        ),
        row(Method::GET, "/healthz", Public, S::None, None),
        row(Method::GET, "/problems", Public, S::None, None),
        row(Method::GET, "/readyz", Public, S::None, None),
        row(Method::GET, "/metrics", Public, S::None, None),
        row(
            Method::GET,
            "/v1/schemas/export.json",
            Public,
            S::None,
            None,
        ),
        row(Method::GET, "/v1/policy", AnyRole, S::None, None),
        row(
            Method::GET,
            "/v1/processing-activities",
            AnyRole,
            S::None,
            None,
        ),
        row(
            Method::POST,
            "/v1/customers",
            Purpose(WRITERS),
            S::None,
            Some(|p| {
                json!({"channel": "api", "notice_version": "2026-01",
                   "fields": {"email": {"value": "matrix@example.com", "purposes": [p]}}})
            }),
        ),
        row(
            Method::POST,
            "/v1/customers/batch",
            Purpose(WRITERS),
            S::None,
            Some(|p| {
                json!([{"channel": "api", "notice_version": "2026-01",
                   "fields": {"email": {"value": "matrix@example.com", "purposes": [p]}}}])
            }),
        ),
        row(
            Method::POST,
            "/v1/customers/search",
            Purpose(READERS),
            S::None,
            Some(|_| json!({"field": "email", "value": "ada@example.com"})),
        ),
        row(
            Method::GET,
            "/v1/customers/{id}",
            Purpose(READERS),
            S::Customer,
            None,
        ),
        row(
            Method::GET,
            "/v1/customers/{id}/fields/{field}",
            Purpose(EMAIL_READERS),
            S::Customer,
            None,
        ),
        row(
            Method::PATCH,
            "/v1/customers/{id}",
            Purpose(WRITERS),
            S::Customer,
            // A new value for the caller's purpose: rectifying a value collected
            // for purposes the role may not write is refused per field.
            Some(|p| {
                let field = if p == "billing" {
                    "name"
                } else {
                    "support_note"
                };
                json!({"fields": {field: {"value": "Matrix Value", "purposes": [p]}}})
            }),
        ),
        row(
            Method::POST,
            "/v1/customers/{id}/consents",
            Roles(&["helpdesk", "dpo"]),
            S::Customer,
            Some(|_| consent("marketing.email", "grant")),
        ),
        row(
            Method::GET,
            "/v1/customers/{id}/consents",
            Roles(&["helpdesk", "dpo"]),
            S::Customer,
            None,
        ),
        row(
            Method::GET,
            "/v1/customers/{id}/export",
            Roles(&["dpo"]),
            S::Customer,
            None,
        ),
        row(
            Method::GET,
            "/v1/customers/{id}/access-log",
            Roles(&["dpo", "auditor"]),
            S::Customer,
            None,
        ),
        row(
            Method::POST,
            "/v1/legal-holds",
            Roles(&["dpo"]),
            S::None,
            Some(|_| {
                json!({"customer_id": Uuid::now_v7(), "fields": ["name"], "reason": "Case 1",
                   "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"})
            }),
        ),
        row(
            Method::GET,
            "/v1/legal-holds",
            Roles(&["dpo"]),
            S::None,
            None,
        ),
        row(
            Method::DELETE,
            "/v1/legal-holds/{id}",
            Roles(&["dpo"]),
            S::None,
            None,
        ),
        row(Method::GET, "/v1/audit", Roles(&["auditor"]), S::None, None),
        row(
            Method::GET,
            "/v1/audit/export",
            Roles(&["auditor"]),
            S::None,
            None,
        ),
        row(
            Method::GET,
            "/v1/audit/verify",
            Roles(&["auditor"]),
            S::None,
            None,
        ),
        row(
            Method::GET,
            "/v1/audit/public-key",
            Roles(&["auditor"]),
            S::None,
            None,
        ),
        row(
            Method::POST,
            "/v1/requests",
            Roles(&["helpdesk", "dpo"]),
            S::None,
            Some(
                |_| json!({"kind": "access", "regulation": "gdpr", "customer_id": Uuid::now_v7(), "verified_by": "id_document_checked"}),
            ),
        ),
        row(
            Method::GET,
            "/v1/requests",
            Roles(&["dpo", "auditor"]),
            S::None,
            None,
        ),
        row(
            Method::GET,
            "/v1/requests/metrics",
            Roles(&["dpo", "auditor"]),
            S::None,
            None,
        ),
        row(
            Method::GET,
            "/v1/requests/{id}",
            Roles(&["dpo", "auditor"]),
            S::Request,
            None,
        ),
        row(
            Method::POST,
            "/v1/requests/{id}/verify",
            Roles(&["helpdesk", "dpo"]),
            S::Request,
            Some(|_| json!({"method": "id_document_checked"})),
        ),
        row(
            Method::POST,
            "/v1/requests/{id}/approve",
            Roles(&["dpo"]),
            S::Request,
            Some(|_| json!({})),
        ),
        row(
            Method::POST,
            "/v1/requests/{id}/deny",
            Roles(&["dpo"]),
            S::Request,
            Some(|_| json!({"reason": "other"})),
        ),
        row(
            Method::POST,
            "/v1/requests/{id}/extend",
            Roles(&["dpo"]),
            S::Request,
            Some(|_| json!({"reason": "complex"})),
        ),
        row(
            Method::GET,
            "/v1/requests/{id}/export",
            Roles(&["dpo"]),
            S::Request,
            None,
        ),
        row(
            Method::GET,
            "/v1/outbox",
            Roles(&["notifier"]),
            S::None,
            None,
        ),
        row(
            Method::POST,
            "/v1/outbox/{id}/ack",
            Roles(&["notifier"]),
            S::None,
            Some(|_| json!({})),
        ),
        row(Method::GET, "/v1/keys", Roles(&["admin"]), S::None, None),
        row(
            Method::POST,
            "/v1/keys/rotate",
            Roles(&["admin"]),
            S::None,
            Some(|_| json!({})),
        ),
        row(
            Method::POST,
            "/v1/keys/{version}/retire",
            Roles(&["admin"]),
            S::None,
            Some(|_| json!({})),
        ),
        row(
            Method::POST,
            "/v1/keys/signing/rotate",
            Roles(&["admin"]),
            S::None,
            Some(|_| json!({})),
        ),
        row(
            Method::POST,
            "/v1/keys/token-signing/rotate",
            Roles(&["admin"]),
            S::None,
            Some(|_| json!({})),
        ),
        // Erasure last: it removes the customers the rows above read.
        row(
            Method::DELETE,
            "/v1/customers/{id}",
            Roles(&["dpo"]),
            S::Customer,
            None,
        ),
    ]
}

fn fill(template: &str, scope: Scope, target: &str) -> String {
    let id = match scope {
        Scope::None => Uuid::now_v7().to_string(),
        _ => target.to_owned(),
    };
    template
        .replace("{id}", &id)
        .replace("{field}", "email")
        .replace("{version}", "999")
}

#[tokio::test]
async fn every_route_role_purpose_and_customer_gets_the_expected_answer() {
    on_each_backend(|v| async move {
        // The table covers exactly the routes the router serves.
        let (_, doc) = pii_vault::http::routes();
        let mut served = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (m, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    served.insert(format!("{m} {path}"));
                }
            }
        }
        let rows = table();
        let listed: BTreeSet<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.method, r.template))
            .collect();
        let missing: Vec<_> = served.difference(&listed).collect();
        let stale: Vec<_> = listed.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the access matrix: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "matrix rows for routes that do not exist: {stale:?}"
        );

        // Fixtures: two customers, two requests, a token per role.
        let helpdesk = v.token("helpdesk").await;
        let customers = [
            v.create(&helpdesk, &ada()).await,
            v.create(&helpdesk, &ada()).await,
        ];
        let dpo = v.token("dpo").await;
        let mut requests = Vec::new();
        for c in &customers {
            let (s, r) = v
                .post(
                    &dpo,
                    "/v1/requests",
                    &json!({"kind": "erasure", "regulation": "gdpr",
                    "customer_id": c, "verified_by": "id_document_checked"}),
                )
                .await;
            assert!(s.is_success(), "{r}");
            requests.push(r["id"].as_str().unwrap().to_owned());
        }
        let mut tokens = Vec::new();
        for role in ROLES {
            tokens.push((*role, v.token(role).await));
        }

        let mut cells = 0;
        let mut failures = Vec::new();
        // (request id, cell) of every refusal, each to be found in the trail.
        let mut refused: Vec<(String, String)> = Vec::new();
        for row in &rows {
            let targets: Vec<&String> = match row.scope {
                Scope::None => vec![&customers[0]],
                Scope::Customer => customers.iter().collect(),
                Scope::Request => requests.iter().collect(),
            };
            for target in targets {
                let path = fill(row.template, row.scope, target);
                if let Access::Public = row.access {
                    let mut req = v.http.request(row.method.clone(), v.url(&path));
                    if let Some(b) = row.body {
                        req = req.json(&b(""));
                    }
                    let (s, b) = split(req.send().await.unwrap()).await;
                    cells += 1;
                    if s == StatusCode::UNAUTHORIZED
                        || s == StatusCode::FORBIDDEN
                        || s.is_server_error()
                    {
                        failures.push(format!("{} {path} without a token: {s} {b}", row.method));
                    }
                    continue;
                }
                for (role, token) in &tokens {
                    let purposes: Vec<(&str, Option<&str>)> = match row.access {
                        Access::Purpose(allowed) => {
                            let right = allowed
                                .iter()
                                .find(|(r, _)| r == role)
                                .map(|(_, p)| *p)
                                .unwrap_or("support");
                            vec![
                                ("none", None),
                                ("wrong", Some(WRONG_PURPOSE)),
                                ("right", Some(right)),
                            ]
                        }
                        _ => vec![("none", None)],
                    };
                    for (kind, purpose) in purposes {
                        let url = match purpose {
                            Some(p) => format!(
                                "{path}{}purpose={p}",
                                if path.contains('?') { '&' } else { '?' }
                            ),
                            None => path.clone(),
                        };
                        let body = row.body.map(|b| b(purpose.unwrap_or("support")));
                        let resp = v
                            .http
                            .request(row.method.clone(), v.url(&url))
                            .bearer_auth(token)
                            .json(body.as_ref().unwrap_or(&Value::Null))
                            .send()
                            .await
                            .unwrap();
                        // The vault names each request (a caller's own id is
                        // kept only from a trusted proxy).
                        let rid = resp
                            .headers()
                            .get("x-request-id")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let (s, b) = split(resp).await;
                        cells += 1;
                        let code = b["code"].as_str().unwrap_or_default().to_owned();
                        if s.is_client_error()
                            && s != StatusCode::PAYLOAD_TOO_LARGE
                            && s != StatusCode::UNSUPPORTED_MEDIA_TYPE
                        {
                            refused.push((
                                rid,
                                format!("{role} {} {url} ({kind} purpose): {s} {code}", row.method),
                            ));
                        }
                        let ok = match row.access {
                            Access::Public => unreachable!(),
                            Access::AnyRole => s.is_success(),
                            Access::Roles(allowed) => {
                                if allowed.contains(role) {
                                    s != StatusCode::UNAUTHORIZED
                                        && s != StatusCode::FORBIDDEN
                                        && !s.is_server_error()
                                } else {
                                    s == StatusCode::FORBIDDEN
                                }
                            }
                            Access::Purpose(allowed) => {
                                let may = allowed.iter().any(|(r, _)| r == role);
                                match (may, kind) {
                                    (_, "none") => {
                                        s == StatusCode::BAD_REQUEST && code == "purpose_required"
                                    }
                                    (_, "wrong") => {
                                        s == StatusCode::FORBIDDEN
                                            && code == "purpose_not_permitted"
                                    }
                                    (true, _) => {
                                        s != StatusCode::UNAUTHORIZED
                                            && s != StatusCode::FORBIDDEN
                                            && !s.is_server_error()
                                    }
                                    (false, _) => s == StatusCode::FORBIDDEN,
                                }
                            }
                        };
                        if !ok {
                            failures.push(format!(
                                "{role} {} {url} ({kind} purpose): {s} {code}",
                                row.method
                            ));
                        }
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {cells} cells differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // Every refusal is an audit event, with the caller named.
        let events = v.audit().await;
        let unaudited: Vec<&String> = refused
            .iter()
            .filter(|(rid, _)| {
                !events
                    .iter()
                    .any(|e| &e.draft.request_id == rid && e.draft.decision != "allowed")
            })
            .map(|(_, cell)| cell)
            .collect();
        assert!(
            unaudited.is_empty(),
            "{} of {} refusals left no audit event:\n{}",
            unaudited.len(),
            refused.len(),
            unaudited
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        eprintln!(
            "access matrix: {} routes, {} roles, {cells} cells, {} refusals audited",
            rows.len(),
            ROLES.len(),
            refused.len()
        );
    })
    .await;
}
