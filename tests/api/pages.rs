//! The HTML pages over HTTP: the fixed form contract (API.md "HTML
//! pages"), the security headers, the cookie flags, CSRF refusal, and the
//! languages. The same flows in a real browser are in `browser.rs`.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::*;

/// The pages' Content-Security-Policy, as API.md and the issue fix it.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// A browser-like client: keeps the cookies the vault sets (by name; the
/// test vault has one host), follows no redirect by itself.
pub struct PageClient {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: Vec<(String, String)>,
    /// Extra headers sent with every request (`Accept-Language`, `Sec-GPC`).
    pub headers: Vec<(&'static str, String)>,
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The `Set-Cookie` line for `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The `value` of the hidden `csrf` input of the page's first form.
    pub fn csrf(&self) -> String {
        attr_after(&self.body, "name=\"csrf\"", "value").expect("the page has a csrf field")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// The value of attribute `attr` in the tag that contains `marker`.
pub fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!("{attr}=\"");
    let from = tag.find(&key)? + key.len();
    let to = from + tag[from..].find('"')?;
    Some(tag[from..to].to_owned())
}

impl PageClient {
    pub fn new(base: &str) -> Self {
        PageClient {
            http: http_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
            cookies: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE).iter() {
            let line = v.to_str().unwrap_or_default();
            let pair = line.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            self.cookies.retain(|(n, _)| n != name);
            if !line.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let mut req = req.header("cookie", self.cookie_header());
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("page request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        self.keep(&headers);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// POSTs a form (`application/x-www-form-urlencoded`).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = serde_urlencoded::to_string(form).expect("form");
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    /// GETs `path` for its CSRF token, then POSTs `form` with it.
    pub async fn submit(&mut self, page: &str, action: &str, form: &[(&str, &str)]) -> Answer {
        let csrf = self.get(page).await.csrf();
        let mut with: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        with.extend_from_slice(form);
        self.post(action, &with).await
    }
}

/// The latest verification code the outbox holds for `request`.
pub async fn code_for(v: &TestVault, notifier: &str, request: &str) -> String {
    let (st, b) = v.get(notifier, "/v1/outbox").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["kind"] == "verification_code" && m["request_id"] == request)
        .expect("a verification code was sent")["body"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The request id in a privacy-center address (`/privacy/requests/{id}…`).
pub fn request_id(location: &str) -> String {
    location
        .trim_start_matches("/privacy/requests/")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Files `kind` for `email` on the privacy center; answers the request id.
pub async fn file(c: &mut PageClient, kind: &str, email: &str) -> String {
    let a = c
        .submit(
            "/privacy/request",
            "/privacy/request",
            &[("kind", kind), ("regulation", "gdpr"), ("email", email)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    request_id(&a.location())
}

fn assert_page_headers(a: &Answer, what: &str) {
    assert_eq!(a.header("content-security-policy"), CSP, "{what}");
    assert!(
        !a.header("content-security-policy")
            .contains("unsafe-inline")
    );
    assert_eq!(a.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(a.header("referrer-policy"), "no-referrer", "{what}");
}

#[tokio::test]
async fn the_request_form_follows_the_fixed_contract() {
    let v = TestVault::start(Backend::Sqlite).await;
    let mut c = PageClient::new(&v.base);
    let a = c.get("/privacy/request").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("content-type").starts_with("text/html"));
    assert_page_headers(&a, "request form");
    assert_eq!(a.header("cache-control"), "no-store");
    assert!(a.body.contains("<html lang=\"en\""));
    // select name="kind" with the API kinds as option values.
    let kind_select = &a.body[a.body.find("name=\"kind\"").expect("select kind")..];
    let kind_select = &kind_select[..kind_select.find("</select>").unwrap()];
    for kind in pii_vault::policy::REQUEST_KINDS {
        assert!(
            kind_select.contains(&format!("<option value=\"{kind}\"")),
            "kind option {kind}"
        );
    }
    assert!(a.body.contains("<select id=\"kind\" name=\"kind\">"));
    let reg = &a.body[a
        .body
        .find("name=\"regulation\"")
        .expect("select regulation")..];
    let reg = &reg[..reg.find("</select>").unwrap()];
    assert!(reg.contains("value=\"gdpr\"") && reg.contains("value=\"ccpa\""));
    assert!(
        a.body
            .contains("<select id=\"regulation\" name=\"regulation\">")
    );
    assert!(a.body.contains("name=\"email\""));
    assert!(a.body.contains("<button type=\"submit\">"));
    assert!(
        a.body
            .contains("method=\"post\" action=\"/privacy/request\"")
    );
    // A CSRF cookie with the flags, and no Secure over plain HTTP.
    let set = a.set_cookie("pv_csrf").expect("csrf cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "{set}");
    // The CCPA links.
    assert!(
        a.body
            .contains("Do Not Sell or Share My Personal Information")
    );
    assert!(
        a.body
            .contains("Limit the Use of My Sensitive Personal Information")
    );
    // The style sheet is a file of its own, under the same headers.
    let css = c.get("/static/pages.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
    assert_page_headers(&css, "style sheet");
    // Pages are not part of the API document.
    let (_, doc) = v.get("", "/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths
            .keys()
            .all(|p| !p.starts_with("/privacy") && !p.starts_with("/static")),
        "pages are not in /openapi.json"
    );
}

#[tokio::test]
async fn an_erasure_from_the_form_to_the_outcome() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        let dpo = v.token("dpo").await;
        v.create(&helpdesk, &ada()).await;
        let mut c = PageClient::new(&v.base);

        let csrf = c.get("/privacy/request").await.csrf();
        let a = c
            .post(
                "/privacy/request",
                &[
                    ("csrf", &csrf),
                    ("kind", "erasure"),
                    ("regulation", "gdpr"),
                    ("email", "Ada@Example.com"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let to = a.location();
        assert!(to.ends_with("/verify"), "{to}");
        let id = request_id(&to);
        // The token is in an HttpOnly, SameSite=Strict cookie scoped to the
        // privacy center, and nowhere in the address.
        let set = a.set_cookie("pv_request").expect("request cookie");
        assert!(set.contains("HttpOnly"), "{set}");
        assert!(set.contains("SameSite=Strict"), "{set}");
        assert!(set.contains("Path=/privacy/"), "{set}");
        let token = c.cookie("pv_request").unwrap().to_owned();
        assert!(token.starts_with("pvr_"));
        assert!(!to.contains(&token));

        let page = c.get(&to).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("name=\"code\""));
        assert!(!page.body.contains(&token), "the token is not in the page");

        // A wrong code: the form again, with the error.
        let wrong = c
            .post(&to, &[("csrf", &page.csrf()), ("code", "00000000")])
            .await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
        assert!(wrong.body.contains("name=\"code\""));
        assert!(wrong.body.contains("role=\"alert\""));

        let code = code_for(&v, &notifier, &id).await;
        let done = c
            .post(&to, &[("csrf", &page.csrf()), ("code", &code)])
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location(), format!("/privacy/requests/{id}"));

        let status = c.get(&format!("/privacy/requests/{id}")).await;
        assert_eq!(status.status, StatusCode::OK);
        assert_eq!(status.header("cache-control"), "no-store");
        assert_eq!(
            attr_after(&status.body, "data-request-status", "data-request-status").as_deref(),
            Some("awaiting_approval")
        );

        let (st, b) = v
            .post(&dpo, &format!("/v1/requests/{id}/approve"), &json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let status = c.get(&format!("/privacy/requests/{id}")).await;
        assert_eq!(
            attr_after(&status.body, "data-request-status", "data-request-status").as_deref(),
            Some("partially_completed")
        );
        assert!(status.body.contains("data-outcome=\"partially_erased\""));
        assert!(status.body.contains("billing"), "what is kept, and why");

        // Another browser (no cookie) cannot see it.
        let mut stranger = PageClient::new(&v.base);
        let other = stranger.get(&format!("/privacy/requests/{id}")).await;
        assert_eq!(other.status, StatusCode::FORBIDDEN);
        assert!(!other.body.contains("data-request-status"));
    })
    .await;
}

#[tokio::test]
async fn filing_for_an_unknown_address_looks_the_same() {
    let v = TestVault::start(Backend::Sqlite).await;
    let helpdesk = v.token("helpdesk").await;
    v.create(&helpdesk, &ada()).await;
    let mut known = PageClient::new(&v.base);
    let mut unknown = PageClient::new(&v.base);
    let a = file(&mut known, "access", "ada@example.com").await;
    let b = file(&mut unknown, "access", "nobody@example.com").await;
    let pa = known.get(&format!("/privacy/requests/{a}/verify")).await;
    let pb = unknown.get(&format!("/privacy/requests/{b}/verify")).await;
    assert_eq!(pa.status, pb.status);
    let strip = |s: &str, id: &str, csrf: &str| s.replace(id, "ID").replace(csrf, "CSRF");
    assert_eq!(
        strip(&pa.body, &a, &pa.csrf()),
        strip(&pb.body, &b, &pb.csrf()),
        "the code page does not tell who is a customer"
    );
}

#[tokio::test]
async fn a_forged_post_is_refused_and_files_nothing() {
    let v = TestVault::start(Backend::Sqlite).await;
    let dpo = v.token("dpo").await;
    let form = [
        ("kind", "erasure"),
        ("regulation", "gdpr"),
        ("email", "ada@example.com"),
    ];
    // No cookie, no token: what another site's form would send.
    let mut forger = PageClient::new(&v.base);
    let a = forger.post("/privacy/request", &form).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.header("content-type").starts_with("text/html"));
    assert_page_headers(&a, "refusal");
    // A cookie of its own but a made-up token.
    forger.get("/privacy/request").await;
    let mut with = vec![("csrf", "00".repeat(32))];
    with.extend(form.iter().map(|(k, v)| (*k, v.to_string())));
    let with: Vec<(&str, &str)> = with.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let b = forger.post("/privacy/request", &with).await;
    assert_eq!(b.status, StatusCode::FORBIDDEN);
    // Another browser's token with this browser's cookie.
    let mut victim = PageClient::new(&v.base);
    let theirs = victim.get("/privacy/request").await.csrf();
    let mut stolen = vec![("csrf", theirs.as_str())];
    stolen.extend_from_slice(&form);
    let c = forger.post("/privacy/request", &stolen).await;
    assert_eq!(c.status, StatusCode::FORBIDDEN);
    assert!(forger.cookie("pv_request").is_none());
    let (st, list) = v.get(&dpo, "/v1/requests").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["requests"], json!([]), "nothing was filed");
}

#[tokio::test]
async fn pages_speak_english_italian_and_simplified_chinese() {
    let v = TestVault::start(Backend::Sqlite).await;
    let lang_of = |body: &str| attr_after(body, "<html", "lang");
    let mut c = PageClient::new(&v.base);
    assert_eq!(
        lang_of(&c.get("/privacy/").await.body).as_deref(),
        Some("en")
    );
    for (accept, tag, text) in [
        ("it-IT,it;q=0.9,en;q=0.5", "it", "Centro privacy"),
        ("zh-CN,zh;q=0.9", "zh-Hans", "隐私中心"),
        ("zh", "zh-Hans", "隐私中心"),
        ("fr-FR, de", "en", "Privacy center"),
    ] {
        let mut c = PageClient::new(&v.base);
        c.headers.push(("accept-language", accept.into()));
        let a = c.get("/privacy/request").await;
        assert_eq!(lang_of(&a.body).as_deref(), Some(tag), "{accept}");
        assert!(a.body.contains(text), "{accept}: {text}");
    }
    // The switch: ?lang= sets the cookie, which then wins over the header.
    let mut c = PageClient::new(&v.base);
    c.headers.push(("accept-language", "en".into()));
    let a = c.get("/privacy/").await;
    let switch = attr_after(&a.body, "hreflang=\"it\"", "href").expect("a visible switch");
    assert!(switch.ends_with("?lang=it"), "{switch}");
    let a = c.get("/privacy/?lang=it").await;
    assert_eq!(lang_of(&a.body).as_deref(), Some("it"));
    let set = a.set_cookie("lang").expect("lang cookie");
    assert!(
        set.starts_with("lang=it;") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let a = c.get("/privacy/request").await;
    assert_eq!(lang_of(&a.body).as_deref(), Some("it"));
    // A request filed in Italian is answered in Italian.
    let helpdesk = v.token("helpdesk").await;
    v.create(&helpdesk, &ada()).await;
    let id = file(&mut c, "access", "ada@example.com").await;
    let dpo = v.token("dpo").await;
    let (_, view) = v.get(&dpo, &format!("/v1/requests/{id}")).await;
    assert_eq!(view["language"], "it", "{view}");
}

#[tokio::test]
async fn cookies_are_secure_when_the_vault_is_reached_over_tls() {
    // public_url https: every cookie is Secure.
    let v = TestVault::start_adjusted(Backend::Sqlite, |s, _| {
        s.public_url = Some("https://privacy.example.com".into());
    })
    .await;
    let mut c = PageClient::new(&v.base);
    let a = c.get("/privacy/request").await;
    let set = a.set_cookie("pv_csrf").unwrap();
    assert!(set.ends_with("; Secure"), "{set}");
    let id = file(&mut c, "access", "nobody@example.com").await;
    assert!(!id.is_empty());

    // Behind a trusted proxy that says https.
    let v = TestVault::start_adjusted(Backend::Sqlite, |s, _| {
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let mut c = PageClient::new(&v.base);
    c.headers.push(("x-forwarded-proto", "https".into()));
    let set = c
        .get("/privacy/request")
        .await
        .set_cookie("pv_csrf")
        .unwrap();
    assert!(set.ends_with("; Secure"), "{set}");
    // The same header from an untrusted peer is not believed.
    let v = TestVault::start(Backend::Sqlite).await;
    let mut c = PageClient::new(&v.base);
    c.headers.push(("x-forwarded-proto", "https".into()));
    let set = c
        .get("/privacy/request")
        .await
        .set_cookie("pv_csrf")
        .unwrap();
    assert!(!set.contains("Secure"), "{set}");
}

#[tokio::test]
async fn form_errors_are_shown_on_the_form_in_the_page_language() {
    let v = TestVault::start(Backend::Sqlite).await;
    let mut c = PageClient::new(&v.base);
    c.headers.push(("accept-language", "it".into()));
    let a = c
        .submit(
            "/privacy/request",
            "/privacy/request",
            &[("kind", "erasure"), ("regulation", "gdpr"), ("email", "")],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("name=\"kind\""), "the form again");
    assert!(
        a.body.contains("Inserisci l&#x27;indirizzo email"),
        "{}",
        a.body
    );
}

/// A customer with an email for support, billing and marketing by email,
/// accessibility needs (health) for support under explicit consent, and
/// marketing consent.
pub fn consenting_customer() -> serde_json::Value {
    let consent = |purpose: &str, explicit: bool| {
        json!({"purpose": purpose, "notice_version": "2026-01", "notice_text_sha256": NOTICE_SHA,
               "language": "en", "jurisdiction": "EU", "explicit": explicit})
    };
    json!({
        "external_id": format!("zd-{}", uuid::Uuid::now_v7().simple()),
        "channel": "chat", "notice_version": "2026-01",
        "fields": {
            "email": {"value": "ada@example.com", "purposes": ["support", "billing", "marketing.email"]},
            "accessibility_needs": {"value": "Screen reader user", "purposes": ["support"]}
        },
        "consents": [consent("support", true), consent("marketing", false)]
    })
}

/// Files `kind` for ada@example.com and enters the code: the browser
/// client now holds a verified request.
pub async fn verified(v: &TestVault, c: &mut PageClient, kind: &str) -> String {
    let notifier = v.token("notifier").await;
    let id = file(c, kind, "ada@example.com").await;
    let code = code_for(v, &notifier, &id).await;
    let a = c
        .submit(
            &format!("/privacy/requests/{id}/verify"),
            &format!("/privacy/requests/{id}/verify"),
            &[("code", &code)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    id
}

/// The withheld reason of `field` when `token` reads the customer for
/// `purpose`; `None` when the value is served.
pub async fn withheld(
    v: &TestVault,
    token: &str,
    customer: &str,
    purpose: &str,
    field: &str,
) -> Option<String> {
    let (st, p) = v
        .get(
            token,
            &format!("/v1/customers/{customer}?purpose={purpose}"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    if p["fields"].get(field).is_some() {
        return None;
    }
    p["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["field"] == field)
        .map(|w| w["reason"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_privacy_center_says_what_is_held_and_why_from_the_policy() {
    let v = TestVault::start(Backend::Sqlite).await;
    let mut c = PageClient::new(&v.base);
    let a = c.get("/privacy/").await;
    assert_eq!(a.status, StatusCode::OK);
    let policy = &v.state.policy;
    assert!(a.body.contains(&policy.controller.name));
    assert!(a.body.contains(&policy.controller.contact));
    assert!(
        a.body
            .contains(policy.controller.dpo_contact.as_deref().unwrap())
    );
    for p in policy.purposes.values() {
        assert!(
            a.body.contains(&format!("data-purpose=\"{}\"", p.name)),
            "{}",
            p.name
        );
    }
    assert!(a.body.contains("Invoice you and keep tax records"));
    assert!(a.body.contains("10 years from collection"));
    assert!(a.body.contains("A legal obligation"));
    assert!(a.body.contains("Only with your explicit consent"));
    assert!(a.body.contains("Our billing system"), "recipients");
    assert!(a.body.contains("Have your data deleted"), "rights");
    // The policy's Italian descriptions on the Italian page.
    c.headers.push(("accept-language", "it".into()));
    let a = c.get("/privacy/").await;
    assert!(
        a.body
            .contains("Emettere fatture e conservare i documenti fiscali")
    );
    assert!(a.body.contains("10 anni dalla raccolta"));
}

#[tokio::test]
async fn an_access_request_offers_its_export_as_json_and_as_a_page() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        v.create(&helpdesk, &consenting_customer()).await;
        let mut c = PageClient::new(&v.base);
        let id = verified(&v, &mut c, "access").await;
        let status = c.get(&format!("/privacy/requests/{id}")).await;
        assert_eq!(
            attr_after(&status.body, "data-request-status", "data-request-status").as_deref(),
            Some("completed")
        );
        assert!(
            status
                .body
                .contains(&format!("/privacy/requests/{id}/export.json"))
        );
        let json = c.get(&format!("/privacy/requests/{id}/export.json")).await;
        assert_eq!(json.status, StatusCode::OK);
        assert!(json.header("content-type").starts_with("application/json"));
        assert!(
            json.header("content-disposition")
                .starts_with("attachment;")
        );
        assert_eq!(json.header("cache-control"), "no-store");
        let package: serde_json::Value = serde_json::from_str(&json.body).unwrap();
        let values: Vec<&str> = package["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["value"].as_str().unwrap())
            .collect();
        assert!(values.contains(&"ada@example.com"), "{values:?}");
        let view = c.get(&format!("/privacy/requests/{id}/export")).await;
        assert_eq!(view.status, StatusCode::OK);
        assert_eq!(view.header("cache-control"), "no-store");
        assert!(view.body.contains("ada@example.com"));
        assert!(view.body.contains("Screen reader user"));
        assert!(view.body.contains("data-export-field=\"email\""));
        // Not for another browser.
        let mut stranger = PageClient::new(&v.base);
        let other = stranger
            .get(&format!("/privacy/requests/{id}/export.json"))
            .await;
        assert_eq!(other.status, StatusCode::FORBIDDEN);
        assert!(!other.body.contains("ada@example.com"));
    })
    .await;
}

/// `purpose` withdrawn with one click on the consents `page` (at `path`): the value the
/// API served to `reader` (token, customer, purpose, field) before is then
/// withheld for `no_consent`.
async fn withdrawn_on_the_page(
    v: &TestVault,
    c: &mut PageClient,
    (path, page): (&str, &Answer),
    purpose: &str,
    (token, customer, read_purpose, field): (&str, &str, &str, &str),
) {
    let before = withheld(v, token, customer, read_purpose, field).await;
    assert_eq!(before, None, "{purpose}: served before the withdrawal");
    let form = [
        ("csrf", page.csrf()),
        ("purpose", purpose.to_owned()),
        ("action", "withdraw".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = c.post(path, &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{purpose}: {}", a.body);
    let after = withheld(v, token, customer, read_purpose, field).await;
    assert_eq!(after.as_deref(), Some("no_consent"), "{purpose}");
}

#[tokio::test]
async fn consents_are_withdrawn_and_explicitly_granted_on_the_page() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let marketing = v.token("marketing_tool").await;
        let customer = v.create(&helpdesk, &consenting_customer()).await;
        let mut c = PageClient::new(&v.base);
        // Before verification: no consents page.
        let unverified = file(&mut c, "access", "ada@example.com").await;
        let a = c
            .get(&format!("/privacy/requests/{unverified}/consents"))
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);

        let id = verified(&v, &mut c, "access").await;
        let path = format!("/privacy/requests/{id}/consents");
        let page = c.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body
                .contains("data-consent=\"support\" data-consent-status=\"granted\"")
        );
        assert!(
            page.body
                .contains("data-consent=\"marketing\" data-consent-status=\"granted\"")
        );
        assert!(
            page.body
                .contains("data-consent=\"partner_sharing\" data-consent-status=\"none\"")
        );

        // The health value serves support under the explicit consent given
        // at collection; one click withdraws it and the API withholds it.
        let reader = (
            helpdesk.as_str(),
            customer.as_str(),
            "support",
            "accessibility_needs",
        );
        withdrawn_on_the_page(&v, &mut c, (&path, &page), "support", reader).await;
        // Granting it back takes the confirmation step: a grant without the
        // ticked box shows the statement again and records nothing.
        let page = c.get(&path).await;
        assert!(
            page.body
                .contains("data-consent=\"support\" data-consent-status=\"withdrawn\"")
        );
        let step = attr_after(&page.body, "data-grant=\"support\"", "href").unwrap();
        assert!(
            step.contains("/consents/explicit?purpose=support"),
            "{step}"
        );
        let a = c
            .post(
                &path,
                &[
                    ("csrf", &page.csrf()),
                    ("purpose", "support"),
                    ("action", "grant"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.body.contains("data-explicit-statement"));
        assert_eq!(
            withheld(&v, &helpdesk, &customer, "support", "accessibility_needs")
                .await
                .as_deref(),
            Some("no_consent")
        );
        let confirm = c
            .get(&format!(
                "/privacy/requests/{id}/consents/explicit?purpose=support"
            ))
            .await;
        assert!(
            confirm
                .body
                .contains("I explicitly consent to Example Helpdesk Ltd")
        );
        let a = c
            .post(
                &path,
                &[
                    ("csrf", &confirm.csrf()),
                    ("purpose", "support"),
                    ("action", "grant"),
                    ("explicit", "true"),
                    ("confirm", "yes"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(
            withheld(&v, &helpdesk, &customer, "support", "accessibility_needs").await,
            None
        );
        // Recorded as explicit, on the web, with the statement's version
        // and hash; the page shows the statement agreed to.
        let dpo = v.token("dpo").await;
        let (_, ledger) = v
            .get(&dpo, &format!("/v1/customers/{customer}/consents"))
            .await;
        let last = ledger["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["action"], "grant");
        assert_eq!(last["explicit"], true);
        assert_eq!(last["channel"], "web");
        assert_eq!(last["notice_version"], "2026-01");
        let statement = v
            .state
            .policy
            .purpose("support")
            .unwrap()
            .consent_notice
            .as_ref()
            .unwrap()
            .explicit_statement("en")
            .unwrap()
            .to_owned();
        assert_eq!(
            last["notice_text_sha256"],
            pii_vault::crypto::sha256_hex(&statement)
        );
        let page = c.get(&path).await;
        assert!(
            page.body
                .contains("data-agreed-notice>I explicitly consent")
        );

        // Marketing: withdrawn in one click, the marketing tool stops
        // getting the email.
        let reader = (
            marketing.as_str(),
            customer.as_str(),
            "marketing.email",
            "email",
        );
        withdrawn_on_the_page(&v, &mut c, (&path, &page), "marketing", reader).await;
        // A forged consent form changes nothing.
        let mut forger = PageClient::new(&v.base);
        forger.cookies.push((
            "pv_request".into(),
            c.cookie("pv_request").unwrap().to_owned(),
        ));
        let a = forger
            .post(&path, &[("purpose", "marketing"), ("action", "grant")])
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(
            withheld(&v, &marketing, &customer, "marketing.email", "email")
                .await
                .as_deref(),
            Some("no_consent")
        );
    })
    .await;
}

#[tokio::test]
async fn a_denial_shows_its_reason_and_the_right_to_complain_and_other_kinds_file_from_the_form() {
    let v = TestVault::start(Backend::Sqlite).await;
    let helpdesk = v.token("helpdesk").await;
    let dpo = v.token("dpo").await;
    v.create(&helpdesk, &ada()).await;
    let mut c = PageClient::new(&v.base);
    let id = verified(&v, &mut c, "erasure").await;
    let (st, b) = v
        .post(
            &dpo,
            &format!("/v1/requests/{id}/deny"),
            &json!({"reason": "legal_claims"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let page = c.get(&format!("/privacy/requests/{id}")).await;
    assert_eq!(
        attr_after(&page.body, "data-request-status", "data-request-status").as_deref(),
        Some("denied")
    );
    assert!(page.body.contains("data-denial-reason=\"legal_claims\""));
    assert!(page.body.contains("supervisory authority"));
    assert!(page.body.contains("dpo@example.com"));

    // A rectification: the corrected value goes in the body, never in an
    // address, and reaches the request.
    let mut c = PageClient::new(&v.base);
    let a = c
        .submit(
            "/privacy/request?kind=rectification",
            "/privacy/request",
            &[
                ("kind", "rectification"),
                ("regulation", "gdpr"),
                ("email", "ada@example.com"),
                ("change_phone", "+39 333 765 4321"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // The address is the request's own and nothing else (a request id is
    // random hex, so it may hold any run of digits).
    let id = request_id(&a.location());
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{}", a.location());
    assert_eq!(a.location(), format!("/privacy/requests/{id}/verify"));
    // An objection names its purpose.
    let a = c
        .submit(
            "/privacy/request?kind=objection",
            "/privacy/request",
            &[
                ("kind", "objection"),
                ("regulation", "gdpr"),
                ("email", "ada@example.com"),
                ("purpose", "marketing"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let (_, list) = v.get(&dpo, "/v1/requests").await;
    let kinds: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"rectification") && kinds.contains(&"objection"),
        "{kinds:?}"
    );
    // An objection without a purpose: the form again, with the error.
    let a = c
        .submit(
            "/privacy/request",
            "/privacy/request",
            &[
                ("kind", "objection"),
                ("regulation", "gdpr"),
                ("email", "ada@example.com"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body
            .contains("Choose the use of your data you object to.")
    );
}
