//! The served `/openapi.json` follows the rules that let integrators
//! generate a client from it. The rules are checked on every operation, so
//! a new endpoint that breaks one fails here.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Operations where `purpose` filters the results instead of stating why
/// personal data is used; there it is optional.
const PURPOSE_FILTERS: [(&str, &str); 1] = [("get", "/v1/audit")];

/// The calls API.md writes with `?purpose=P`.
const PURPOSE_REQUIRED: [(&str, &str); 5] = [
    ("post", "/v1/customers"),
    ("get", "/v1/customers/{id}"),
    ("patch", "/v1/customers/{id}"),
    ("get", "/v1/customers/{id}/fields/{field}"),
    ("post", "/v1/customers/search"),
];

struct Op<'a> {
    method: &'a str,
    path: &'a str,
    op: &'a Value,
}

impl Op<'_> {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }
}

fn operations(doc: &Value) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths").iter() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push(Op { method, path, op });
            }
        }
    }
    ops
}

/// Resolves a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// The operation's parameters, its path item's included.
fn parameters<'a>(doc: &'a Value, op: &Op<'a>) -> Vec<&'a Value> {
    let own = op.op["parameters"].as_array().into_iter().flatten();
    let shared = doc["paths"][op.path]["parameters"]
        .as_array()
        .into_iter()
        .flatten();
    own.chain(shared).map(|p| resolve(doc, p)).collect()
}

fn responses<'a>(doc: &'a Value, op: &Op<'a>) -> Vec<(&'a String, &'a Value)> {
    op.op["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{} has no responses", op.name()))
        .iter()
        .map(|(status, r)| (status, resolve(doc, r)))
        .collect()
}

/// Every broken rule, one line each.
fn violations(doc: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for op in operations(doc) {
        let name = op.name();
        match op.op["operationId"].as_str() {
            Some(id) if !id.is_empty() => {
                if let Some(first) = seen.insert(id.to_owned(), name.clone()) {
                    bad.push(format!("{name}: operationId {id} also on {first}"));
                }
            }
            _ => bad.push(format!("{name}: no operationId")),
        }
        for (status, resp) in responses(doc, &op) {
            let described = resp["description"]
                .as_str()
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                bad.push(format!("{name}: response {status} has no description"));
            }
            if ["200", "201", "202"].contains(&status.as_str()) {
                bad.extend(success_content(&name, status, resp));
            }
        }
        let params = parameters(doc, &op);
        if op.method == "post" {
            let declared = params.iter().any(|p| {
                p["in"] == "header"
                    && p["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("idempotency-key"))
            });
            if !declared {
                bad.push(format!("{name}: no Idempotency-Key header parameter"));
            }
        }
        let purpose = params
            .iter()
            .find(|p| p["in"] == "query" && p["name"] == "purpose");
        let filter = PURPOSE_FILTERS.contains(&(op.method, op.path));
        if let Some(p) = purpose
            && !filter
            && p["required"] != true
        {
            bad.push(format!("{name}: `purpose` is not required"));
        }
        if PURPOSE_REQUIRED.contains(&(op.method, op.path)) && purpose.is_none() {
            bad.push(format!("{name}: no `purpose` parameter"));
        }
    }
    bad
}

/// A success answer says what it carries: some content, and a schema for
/// every JSON media type.
fn success_content(name: &str, status: &str, resp: &Value) -> Vec<String> {
    let Some(content) = resp["content"].as_object().filter(|c| !c.is_empty()) else {
        return vec![format!("{name}: response {status} declares no content")];
    };
    content
        .iter()
        .filter(|(media, _)| media.as_str() == "application/json" || media.ends_with("+json"))
        .filter(|(_, c)| c["schema"].as_object().is_none_or(|s| s.is_empty()))
        .map(|(media, _)| format!("{name}: response {status} ({media}) has no schema"))
        .collect()
}

async fn served_document() -> Value {
    let v = TestVault::start(Backend::Sqlite).await;
    let resp = v.http.get(v.url("/openapi.json")).send().await.unwrap();
    let (status, doc) = split(resp).await;
    assert_eq!(status, StatusCode::OK);
    doc
}

#[tokio::test]
async fn every_operation_follows_the_document_rules() {
    let doc = served_document().await;
    assert!(
        operations(&doc).len() > 30,
        "the document lists the API's operations"
    );
    let bad = violations(&doc);
    assert!(
        bad.is_empty(),
        "{} broken rules:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[tokio::test]
async fn purpose_is_a_required_string_on_personal_data_calls() {
    let doc = served_document().await;
    for op in operations(&doc) {
        if !PURPOSE_REQUIRED.contains(&(op.method, op.path)) {
            continue;
        }
        let params = parameters(&doc, &op);
        let p = params
            .iter()
            .find(|p| p["in"] == "query" && p["name"] == "purpose")
            .unwrap_or_else(|| panic!("{}: no purpose", op.name()));
        assert_eq!(p["required"], true, "{}", op.name());
        assert_eq!(p["schema"]["type"], "string", "{}: {p}", op.name());
    }
}

#[tokio::test]
async fn the_standards_endpoints_are_in_the_document() {
    let doc = served_document().await;
    let listed: Vec<String> = operations(&doc).iter().map(Op::name).collect();
    for op in [
        "POST /v1/token",
        "POST /v1/token/introspect",
        "GET /.well-known/oauth-authorization-server",
        "GET /.well-known/jwks.json",
        "POST /v1/keys/token-signing/rotate",
        "GET /problems",
    ] {
        assert!(listed.iter().any(|l| l == op), "{op} missing: {listed:?}");
    }
}

/// The rules themselves catch what they are meant to catch.
#[test]
fn the_rules_catch_a_broken_operation() {
    let doc = serde_json::json!({
        "openapi": "3.1.0",
        "paths": {
            "/v1/customers": {"post": {
                "operationId": "x",
                "parameters": [{"name": "purpose", "in": "query", "required": false,
                                "schema": {"type": "string"}}],
                "responses": {
                    "201": {"description": "", "content": {"application/json": {}}},
                    "400": {"$ref": "#/components/responses/Bad"}}}},
            "/v1/other": {"get": {
                "operationId": "x",
                "responses": {"200": {"description": "fine"}}}}
        },
        "components": {"responses": {"Bad": {"description": ""}}}
    });
    let bad = violations(&doc);
    let expect = [
        "POST /v1/customers: response 201 has no description",
        "POST /v1/customers: response 201 (application/json) has no schema",
        "POST /v1/customers: response 400 has no description",
        "POST /v1/customers: no Idempotency-Key header parameter",
        "POST /v1/customers: `purpose` is not required",
        "GET /v1/other: operationId x also on POST /v1/customers",
        "GET /v1/other: response 200 declares no content",
    ];
    for e in expect {
        assert!(bad.iter().any(|b| b == e), "missing {e:?} in {bad:#?}");
    }
    assert_eq!(bad.len(), expect.len(), "{bad:#?}");
}
