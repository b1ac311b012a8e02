//! The pages in a real browser: Debian's `chromium` driven by its
//! `chromedriver` over WebDriver (fantoccini, plain HTTP on loopback).
//!
//! These tests are `#[ignore]`d in a plain `cargo test` (a fresh machine may
//! have no Chromium); `.ci/browser.sh` installs `chromium`,
//! `chromium-driver` and `fonts-noto-cjk` and runs them on SQLite and on
//! PostgreSQL:
//!
//! ```sh
//! cargo test --test api -- --ignored browser::
//! ```
//!
//! Each test starts its own chromedriver on a free port and a headless
//! Chromium with a fresh profile; screenshots go to
//! `target/screenshots/<name>.png`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::*;

/// The chromedriver binary (`CHROMEDRIVER` overrides).
fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// The browser binary (`CHROMIUM` overrides).
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Chromium Devtools Protocol command, through chromedriver.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"cmd": self.cmd, "params": self.params}).to_string()),
        )
    }
}

/// A headless Chromium and its driver; both end when this is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A fresh browser (new profile: no cookies), window 1024×900.
    pub async fn start() -> Browser {
        let port = free_port();
        let mut driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (apt-get install chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let probe = http();
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(r) = probe.get(format!("{base}/status")).send().await
                && r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
            {
                ready = true;
                break;
            }
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "chromedriver answers /status");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--window-size=1024,900", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&base)
            .await
            .expect("a WebDriver session");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// Every request carries these headers from now on (e.g. `Sec-GPC`).
    pub async fn send_headers(&self, headers: Value) {
        self.cdp("Network.enable", json!({})).await;
        self.cdp("Network.setExtraHTTPHeaders", json!({ "headers": headers }))
            .await;
    }

    /// The browser asks for pages in `accept_language` (`Accept-Language`).
    pub async fn accept_language(&self, accept_language: &str) {
        let ua: Value = self
            .client
            .execute("return navigator.userAgent", vec![])
            .await
            .expect("user agent");
        self.cdp(
            "Network.setUserAgentOverride",
            json!({"userAgent": ua, "acceptLanguage": accept_language}),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    pub async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
    }

    pub async fn attr(&self, selector: &str, attr: &str) -> Option<String> {
        self.css(selector)
            .await
            .attr(attr)
            .await
            .expect("attribute")
    }

    pub async fn fill(&self, selector: &str, text: &str) {
        self.css(selector)
            .await
            .send_keys(text)
            .await
            .expect("typing");
    }

    pub async fn select(&self, selector: &str, value: &str) {
        self.css(selector)
            .await
            .select_by_value(value)
            .await
            .expect("select");
    }

    /// Clicks and waits for the page it leads to: until the document
    /// the click started from is gone (its root element goes stale) and the
    /// new one has loaded.
    pub async fn click(&self, selector: &str) {
        let old = self.css("html").await;
        self.css(selector).await.click().await.expect("click");
        for _ in 0..800 {
            if old.tag_name().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for _ in 0..800 {
            let state: Value = self
                .client
                .execute("return document.readyState", vec![])
                .await
                .unwrap_or_default();
            if state == "complete" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Clicks where no new page is expected.
    pub async fn click_here(&self, selector: &str) {
        self.css(selector).await.click().await.expect("click");
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_owned()
    }

    pub async fn text(&self) -> String {
        self.css("body").await.text().await.expect("text")
    }

    /// Saves a screenshot of the whole page, `width` pixels wide, to
    /// `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str, width: u32) {
        self.client
            .set_window_size(width, 900)
            .await
            .expect("resize");
        let height: Value = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .expect("page height");
        let height = height.as_u64().unwrap_or(900).clamp(300, 4000) as u32;
        self.client
            .set_window_size(width, height + 90)
            .await
            .expect("resize");
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot saved");
        self.client
            .set_window_size(1024, 900)
            .await
            .expect("resize");
    }

    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = self.driver.kill();
    }
}

/// The verification code the outbox holds for `request`.
async fn code(v: &TestVault, request: &str) -> String {
    let notifier = v.token("notifier").await;
    crate::pages::code_for(v, &notifier, request).await
}

/// Files `kind` for `email` through the form; answers the request id (the
/// browser is then on the code page).
async fn file(b: &Browser, v: &TestVault, kind: &str, email: &str) -> String {
    b.goto(&v.url("/privacy/request")).await;
    b.select("select[name=kind]", kind).await;
    b.select("select[name=regulation]", "gdpr").await;
    b.fill("input[name=email]", email).await;
    b.click("form[action='/privacy/request'] button[type=submit]")
        .await;
    let path = b.path().await;
    assert!(path.ends_with("/verify"), "{path}: {}", b.text().await);
    crate::pages::request_id(&path)
}

/// Enters the code on the code page; the browser lands on the status page.
async fn enter_code(b: &Browser, code: &str) {
    b.fill("input[name=code]", code).await;
    b.click("form button[type=submit]").await;
}

async fn status_of(b: &Browser) -> String {
    b.attr("[data-request-status]", "data-request-status")
        .await
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_an_erasure_filed_verified_and_approved_shows_its_outcome() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        v.create(&helpdesk, &ada()).await;
        let b = Browser::start().await;
        b.goto(&v.url("/privacy/")).await;
        b.screenshot("privacy-index", 1024).await;
        b.goto(&v.url("/privacy/request")).await;
        b.screenshot("privacy-request", 1024).await;
        let id = file(&b, &v, "erasure", "ada@example.com").await;
        b.screenshot("privacy-verify", 1024).await;
        enter_code(&b, &code(&v, &id).await).await;
        assert_eq!(b.path().await, format!("/privacy/requests/{id}"));
        assert_eq!(status_of(&b).await, "awaiting_approval");

        let (st, body) = v
            .post(&dpo, &format!("/v1/requests/{id}/approve"), &json!({}))
            .await;
        assert_eq!(st.as_u16(), 200, "{body}");
        b.client.refresh().await.expect("reload");
        assert_eq!(status_of(&b).await, "partially_completed");
        assert_eq!(
            b.attr("[data-outcome]", "data-outcome").await.as_deref(),
            Some("partially_erased")
        );
        b.screenshot("privacy-status-erasure", 1024).await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_cookies_are_httponly_strict_and_scoped() {
    let v = TestVault::start(Backend::Sqlite).await;
    let b = Browser::start().await;
    let id = file(&b, &v, "access", "nobody@example.com").await;
    assert!(!id.is_empty());
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    let find = |name: &str| {
        cookies
            .iter()
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("cookie {name}"))
    };
    for name in ["pv_request", "pv_csrf"] {
        let c = find(name);
        assert_eq!(c.http_only(), Some(true), "{name} HttpOnly");
        assert_eq!(
            c.same_site().map(|s| s.to_string()).as_deref(),
            Some("Strict"),
            "{name} SameSite"
        );
    }
    assert_eq!(find("pv_request").path(), Some("/privacy/"));
    // Script on the page cannot read them.
    let seen: Value = b
        .client
        .execute("return document.cookie", vec![])
        .await
        .expect("script");
    assert_eq!(seen, json!(""), "HttpOnly cookies are invisible to script");
    // The token is in no address the browser visited.
    let token = find("pv_request").value().to_owned();
    assert!(
        !b.client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains(&token)
    );
    assert!(!b.text().await.contains(&token));
    b.close().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_inline_script_is_blocked_by_the_csp() {
    let v = TestVault::start(Backend::Sqlite).await;
    let b = Browser::start().await;
    b.goto(&v.url("/privacy/request")).await;
    // An injected inline script (what an XSS would add) does not run, and
    // the browser reports the violation.
    let result: Value = b
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               window.__ran = false;
               document.addEventListener('securitypolicyviolation',
                 e => done({ran: window.__ran, directive: e.effectiveDirective}));
               const s = document.createElement('script');
               s.textContent = 'window.__ran = true;';
               document.body.appendChild(s);
               setTimeout(() => done({ran: window.__ran, directive: null}), 2000);"#,
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(result["ran"], json!(false), "{result}");
    assert_eq!(result["directive"], json!("script-src-elem"), "{result}");
    // The style sheet, a file of the vault's, did apply.
    let font: Value = b
        .client
        .execute(
            "return getComputedStyle(document.querySelector('button[type=submit]')).minHeight",
            vec![],
        )
        .await
        .expect("style");
    assert_eq!(font, json!("44px"));
    b.close().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_gpc_is_honoured_and_shown() {
    let v = TestVault::start(Backend::Sqlite).await;
    let helpdesk = v.token("helpdesk").await;
    let mut customer = ada();
    customer["fields"]["email"]["purposes"] = json!(["support", "partner_sharing"]);
    customer["consents"] = json!([{"purpose": "partner_sharing", "notice_version": "2026-01",
        "notice_text_sha256": NOTICE_SHA, "language": "en", "jurisdiction": "US-CA"}]);
    let id = v.create(&helpdesk, &customer).await;
    let b = Browser::start().await;
    b.send_headers(json!({"Sec-GPC": "1"})).await;
    b.goto(&v.url("/privacy/")).await;
    assert_eq!(
        b.attr("[data-gpc]", "data-gpc").await.as_deref(),
        Some("honoured"),
        "the page says the signal is honoured"
    );
    b.screenshot("privacy-gpc", 1024).await;
    // Filing anything with the signal opts the customer out of sale and
    // sharing at once: the partner no longer gets the email.
    file(&b, &v, "access", "ada@example.com").await;
    let stored = v
        .state
        .store
        .customer_record(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.customer.opted_out_sale, "GPC recorded as an opt-out");
    b.close().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_italian_and_chinese_pages() {
    let v = TestVault::start(Backend::Sqlite).await;
    let b = Browser::start().await;
    b.accept_language("it-IT,it;q=0.9").await;
    b.goto(&v.url("/privacy/request")).await;
    assert_eq!(b.attr("html", "lang").await.as_deref(), Some("it"));
    assert!(b.text().await.contains("Centro privacy"));
    b.screenshot("privacy-request-it", 1024).await;
    // The visible switch.
    b.click("a[hreflang='zh-Hans']").await;
    assert_eq!(b.attr("html", "lang").await.as_deref(), Some("zh-Hans"));
    assert!(b.text().await.contains("隐私中心"));
    b.screenshot("privacy-request-zh-Hans", 1024).await;
    // The choice is remembered over Accept-Language.
    b.goto(&v.url("/privacy/")).await;
    assert_eq!(b.attr("html", "lang").await.as_deref(), Some("zh-Hans"));
    // At 320 px nothing scrolls sideways.
    b.client.set_window_size(320, 800).await.unwrap();
    b.goto(&v.url("/privacy/request")).await;
    let overflow: Value = b
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(true), "no horizontal scrolling at 320 px");
    b.screenshot("privacy-request-320px", 320).await;
    b.close().await;
}

/// Files `kind` for ada@example.com and enters the code: the browser is on
/// the request's status page.
async fn verified(b: &Browser, v: &TestVault, kind: &str) -> String {
    let id = file(b, v, kind, "ada@example.com").await;
    enter_code(b, &code(v, &id).await).await;
    assert_eq!(b.path().await, format!("/privacy/requests/{id}"));
    id
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_an_access_export_is_downloaded_and_read() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        v.create(&helpdesk, &crate::pages::consenting_customer())
            .await;
        let b = Browser::start().await;
        let id = verified(&b, &v, "access").await;
        assert_eq!(status_of(&b).await, "completed");
        b.screenshot("privacy-status-access", 1024).await;
        // The download, as the browser fetches it (with its cookie).
        let got: Value = b
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   const link = document.querySelector('a[href$="/export.json"]');
                   fetch(link.href).then(async r => done({
                       status: r.status,
                       disposition: r.headers.get('content-disposition'),
                       body: await r.json(),
                       download: link.hasAttribute('download')}));"#,
                vec![],
            )
            .await
            .expect("download");
        assert_eq!(got["status"], 200, "{got}");
        assert_eq!(got["download"], true);
        assert!(
            got["disposition"]
                .as_str()
                .unwrap()
                .starts_with("attachment;")
        );
        let values: Vec<&str> = got["body"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["value"].as_str())
            .collect();
        assert!(values.contains(&"ada@example.com"), "{values:?}");
        // The readable view of the same data.
        b.click(&format!("a[href='/privacy/requests/{id}/export']"))
            .await;
        assert_eq!(b.path().await, format!("/privacy/requests/{id}/export"));
        let text = b.text().await;
        assert!(text.contains("ada@example.com"));
        assert!(text.contains("Screen reader user"));
        b.screenshot("privacy-export", 1024).await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_a_consent_withdrawn_on_the_page_is_withheld_by_the_api() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let customer = v
            .create(&helpdesk, &crate::pages::consenting_customer())
            .await;
        let b = Browser::start().await;
        let id = verified(&b, &v, "access").await;
        b.click(&format!("a[href='/privacy/requests/{id}/consents']"))
            .await;
        b.screenshot("privacy-consents", 1024).await;
        assert_eq!(
            needs(&v, &helpdesk, &customer).await,
            None,
            "served under the explicit consent"
        );
        b.click("button[data-withdraw='support']").await;
        assert_eq!(
            b.attr("[data-consent='support']", "data-consent-status")
                .await
                .as_deref(),
            Some("withdrawn")
        );
        assert_eq!(
            needs(&v, &helpdesk, &customer).await.as_deref(),
            Some("no_consent"),
            "withheld at once"
        );
        // Explicit consent again: its own step, with the statement.
        b.click("a[data-grant='support']").await;
        assert!(b.path().await.ends_with("/consents/explicit"));
        assert!(
            b.text()
                .await
                .contains("I explicitly consent to Example Helpdesk Ltd")
        );
        b.screenshot("privacy-explicit-consent", 1024).await;
        // The box must be ticked (the browser itself refuses otherwise).
        b.click_here("form button[type=submit]").await;
        assert!(
            b.path().await.ends_with("/consents/explicit"),
            "not sent unticked"
        );
        assert_eq!(
            needs(&v, &helpdesk, &customer).await.as_deref(),
            Some("no_consent")
        );
        b.click_here("input[name=confirm]").await;
        b.click("form button[type=submit]").await;
        assert_eq!(b.path().await, format!("/privacy/requests/{id}/consents"));
        assert_eq!(
            b.attr("[data-consent='support']", "data-consent-status")
                .await
                .as_deref(),
            Some("granted")
        );
        assert_eq!(needs(&v, &helpdesk, &customer).await, None, "served again");
        b.close().await;
    })
    .await;
}

/// Why the helpdesk's support read withholds the accessibility needs
/// (`None`: served).
async fn needs(v: &TestVault, helpdesk: &str, customer: &str) -> Option<String> {
    crate::pages::withheld(v, helpdesk, customer, "support", "accessibility_needs").await
}

/// A page on another site (`localhost`, while the vault is `127.0.0.1`)
/// whose form posts to the vault as soon as it loads.
async fn attacker_site(vault: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        "<!doctype html><html><body onload=\"document.forms[0].submit()\">\
         <form method=post action=\"{vault}/privacy/request\">\
         <input name=kind value=erasure><input name=regulation value=gdpr>\
         <input name=email value=ada@example.com><input name=csrf value=forged></form></body></html>"
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    format!("http://localhost:{port}/")
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_a_forged_csrf_post_is_refused() {
    let v = TestVault::start(Backend::Sqlite).await;
    let dpo = v.token("dpo").await;
    let b = Browser::start().await;
    // The customer has the privacy center open (so holds its cookie)…
    b.goto(&v.url("/privacy/request")).await;
    // …and another site posts a form to it.
    b.goto(&attacker_site(&v.base).await).await;
    for _ in 0..400 {
        if b.path().await == "/privacy/request" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(b.path().await, "/privacy/request");
    assert_eq!(
        b.attr("[data-error-status]", "data-error-status")
            .await
            .as_deref(),
        Some("403")
    );
    b.screenshot("privacy-csrf-refused", 1024).await;
    // A token altered in the vault's own form is refused too.
    b.goto(&v.url("/privacy/request")).await;
    b.client
        .execute(
            "document.querySelector('input[name=csrf]').value = '0'.repeat(64)",
            vec![],
        )
        .await
        .unwrap();
    b.select("select[name=kind]", "erasure").await;
    b.fill("input[name=email]", "ada@example.com").await;
    b.click("form[action='/privacy/request'] button[type=submit]")
        .await;
    assert_eq!(
        b.attr("[data-error-status]", "data-error-status")
            .await
            .as_deref(),
        Some("403")
    );
    let (_, list) = v.get(&dpo, "/v1/requests").await;
    assert_eq!(list["requests"], json!([]), "nothing was filed");
    b.close().await;
}
