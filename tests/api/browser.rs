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

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::console;
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
        self.wait_for_next_page(old).await;
    }

    /// Waits until the document whose root is `old` is gone and the next
    /// one has loaded.
    pub async fn wait_for_next_page(&self, old: fantoccini::elements::Element) {
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

    /// Presses and releases each of `keys` on the keyboard (WebDriver key
    /// actions: whatever has the focus gets them, as from a person).
    pub async fn keys(&self, keys: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for k in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value: k })
                .then(KeyAction::Up { value: k });
        }
        self.client
            .perform_actions(actions)
            .await
            .expect("key actions");
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
async fn browser_an_erasure_filed_verified_and_approved_in_the_console_shows_its_outcome() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        v.create(&helpdesk, &ada()).await;
        let dana = console::user(&v, "dana", "dpo").await;
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

        // The DPO, in a browser of their own, finds it in the queue and
        // approves it on its page.
        let dpo = Browser::start().await;
        dpo.goto(&v.url("/console/")).await;
        dpo.screenshot("console-sign-in", 1024).await;
        console_sign_in(&dpo, &v, "dana").await;
        dpo.screenshot("console-home", 1024).await;
        dpo.click("nav.main-nav a[href='/console/requests']").await;
        let row = format!("tr[data-request-id='{id}']");
        assert_eq!(
            dpo.attr(
                &format!("{row} [data-request-status]"),
                "data-request-status"
            )
            .await
            .as_deref(),
            Some("awaiting_approval")
        );
        dpo.screenshot("console-queue", 1024).await;
        dpo.click(&format!("{row} a[href='/console/requests/{id}']"))
            .await;
        assert_eq!(dpo.path().await, format!("/console/requests/{id}"));
        dpo.screenshot("console-request", 1024).await;
        dpo.click("button[name=action][value=approve]").await;
        assert_eq!(dpo.path().await, format!("/console/requests/{id}"));
        assert_eq!(
            dpo.attr("[data-request-status]", "data-request-status")
                .await
                .as_deref(),
            Some("partially_completed")
        );
        assert!(
            dpo.client
                .find(Locator::Css("button[name=action]"))
                .await
                .is_err(),
            "a closed request offers no actions"
        );
        dpo.screenshot("console-request-done", 1024).await;
        // Audited with the signed-in user as the actor.
        assert!(
            v.audit()
                .await
                .iter()
                .any(|e| e.draft.action == "request.approved"
                    && e.draft.actor == dana.to_string()
                    && e.draft.reasons.get("request").map(String::as_str) == Some(id.as_str()))
        );

        // The customer's page shows the outcome.
        b.client.refresh().await.expect("reload");
        assert_eq!(status_of(&b).await, "partially_completed");
        assert_eq!(
            b.attr("[data-outcome]", "data-outcome").await.as_deref(),
            Some("partially_erased")
        );
        b.screenshot("privacy-status-erasure", 1024).await;
        dpo.close().await;
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
    assert_no_sideways_scrolling(&b).await;
    b.screenshot("privacy-request-320px", 320).await;
    b.close().await;
}

/// The page fits the window's width: nothing scrolls sideways.
async fn assert_no_sideways_scrolling(b: &Browser) {
    let fits: Value = b
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits,
        json!(true),
        "no horizontal scrolling on {}",
        b.path().await
    );
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
/// whose form posts `fields` to `action` as soon as it loads.
async fn attacker_site(action: &str, fields: &[(&str, &str)]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!("<input name={k} value={v}>"))
        .collect();
    let page = format!(
        "<!doctype html><html><body onload=\"document.forms[0].submit()\">\
         <form method=post action=\"{action}\">{inputs}</form></body></html>"
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

/// Waits until the browser is on `path` (a cross-site form post lands
/// there).
async fn wait_for_path(b: &Browser, path: &str) {
    for _ in 0..400 {
        if b.path().await == path {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(b.path().await, path);
}

async fn error_status(b: &Browser) -> Option<String> {
    b.attr("[data-error-status]", "data-error-status").await
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
    let forged = [
        ("kind", "erasure"),
        ("regulation", "gdpr"),
        ("email", "ada@example.com"),
        ("csrf", "forged"),
    ];
    b.goto(&attacker_site(&v.url("/privacy/request"), &forged).await)
        .await;
    wait_for_path(&b, "/privacy/request").await;
    assert_eq!(error_status(&b).await.as_deref(), Some("403"));
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
    assert_eq!(error_status(&b).await.as_deref(), Some("403"));
    let (_, list) = v.get(&dpo, "/v1/requests").await;
    assert_eq!(list["requests"], json!([]), "nothing was filed");
    b.close().await;
}

// ---------------------------------------------------------------------------
// The staff console
// ---------------------------------------------------------------------------

/// Signs `name` in on the console's form; the browser is then on the
/// console's home page.
async fn console_sign_in(b: &Browser, v: &TestVault, name: &str) {
    b.goto(&v.url("/console/")).await;
    b.fill("input[name=username]", name).await;
    b.fill("input[name=password]", console::PASSWORD).await;
    b.click("form[action='/console/'] button[type=submit]")
        .await;
    signed_in_home(b).await;
}

/// The browser is on the console's home page, signed in.
async fn signed_in_home(b: &Browser) {
    assert_eq!(b.path().await, "/console/");
    assert!(
        b.client
            .find(Locator::Css("form[action='/console/sign-out']"))
            .await
            .is_ok(),
        "signed in: {}",
        b.text().await
    );
}

/// The browser is on the sign-in form.
async fn on_sign_in_form(b: &Browser) {
    assert_eq!(b.path().await, "/console/");
    assert!(
        b.client
            .find(Locator::Css("input[name=password]"))
            .await
            .is_ok(),
        "the sign-in form: {}",
        b.text().await
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_a_denial_in_the_console_shows_its_reason_to_the_customer() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let customer = v.create(&helpdesk, &ada()).await;
        console::user(&v, "dana", "dpo").await;
        let b = Browser::start().await;
        let id = verified(&b, &v, "erasure").await;

        let dpo = Browser::start().await;
        console_sign_in(&dpo, &v, "dana").await;
        dpo.goto(&v.url(&format!("/console/requests/{id}"))).await;
        dpo.select("select[name=reason]", "excessive").await;
        dpo.fill("textarea[name=note]", "The third erasure this month")
            .await;
        dpo.click("button[name=action][value=deny]").await;
        assert_eq!(
            dpo.attr("[data-request-status]", "data-request-status")
                .await
                .as_deref(),
            Some("denied")
        );
        assert_eq!(
            dpo.attr("[data-denial-reason]", "data-denial-reason")
                .await
                .as_deref(),
            Some("excessive")
        );

        b.client.refresh().await.expect("reload");
        assert_eq!(status_of(&b).await, "denied");
        assert_eq!(
            b.attr("[data-denial-reason]", "data-denial-reason")
                .await
                .as_deref(),
            Some("excessive")
        );
        assert!(b.text().await.contains("The third erasure this month"));
        b.screenshot("privacy-status-denied", 1024).await;

        // A legal hold placed on the holds page, and the year's metrics.
        dpo.click("nav.main-nav a[href='/console/holds']").await;
        dpo.fill("#hold-customer", &customer).await;
        dpo.fill("#hold-fields", "email").await;
        dpo.fill("#hold-reason", "Pending litigation").await;
        dpo.client
            .execute(
                "document.querySelector('#hold-review').value = '2027-06-30'",
                vec![],
            )
            .await
            .unwrap();
        dpo.click("form[method=post][action='/console/holds'] button[type=submit]")
            .await;
        assert_eq!(dpo.path().await, "/console/holds");
        let Ok(hold) = dpo.client.find(Locator::Css("tr[data-hold-id]")).await else {
            panic!("a hold: {}", dpo.text().await);
        };
        let hold = hold.text().await.unwrap();
        assert!(hold.contains(&customer), "{hold}");
        assert!(hold.contains("Pending litigation"), "{hold}");
        dpo.screenshot("console-holds", 1024).await;
        dpo.click("nav.main-nav a[href='/console/metrics']").await;
        let erasure = dpo
            .css("tr[data-kind='erasure']")
            .await
            .text()
            .await
            .unwrap();
        assert!(erasure.split_whitespace().any(|c| c == "1"), "{erasure}");
        dpo.screenshot("console-metrics", 1024).await;
        dpo.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_an_auditor_verifies_the_trail_in_the_console() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let customer = v.create(&helpdesk, &ada()).await;
        let (st, _) = v
            .get(
                &helpdesk,
                &format!("/v1/customers/{customer}?purpose=support"),
            )
            .await;
        assert_eq!(st.as_u16(), 200);
        console::user(&v, "aude", "auditor").await;
        let b = Browser::start().await;
        console_sign_in(&b, &v, "aude").await;
        assert!(
            b.client
                .find(Locator::Css("nav.main-nav a[href='/console/holds']"))
                .await
                .is_err(),
            "no legal holds for an auditor"
        );

        b.click("nav.main-nav a[href='/console/audit/verify']")
            .await;
        assert_eq!(
            b.attr("[data-verify]", "data-verify").await.as_deref(),
            Some("ok"),
            "{}",
            b.text().await
        );
        b.screenshot("console-verify", 1024).await;

        // The trail, filtered to the customer, leads to their access log.
        b.click("nav.main-nav a[href='/console/audit']").await;
        b.fill("#f-customer_id", &customer).await;
        b.click("form[action='/console/audit'] button[type=submit]")
            .await;
        let rows = b
            .client
            .find_all(Locator::Css("tr[data-seq]"))
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{}", b.text().await);
        for row in &rows {
            assert!(row.text().await.unwrap().contains(&customer));
        }
        b.screenshot("console-trail", 1024).await;
        b.click(&format!(
            "a[href='/console/audit/access-log?customer_id={customer}']"
        ))
        .await;
        let log = b.css("tbody").await.text().await.unwrap();
        assert!(log.contains("customer.read"), "{log}");
        assert!(log.contains("support"), "{log}");
        b.screenshot("console-access-log", 1024).await;

        // An event changed behind the vault's back: verify names it.
        v.exec("UPDATE audit_events SET action = 'customer.deleted' WHERE seq = 2")
            .await;
        b.goto(&v.url("/console/audit/verify")).await;
        assert_eq!(
            b.attr("[data-verify]", "data-verify").await.as_deref(),
            Some("failed")
        );
        assert_eq!(
            b.attr("[data-first-bad-seq]", "data-first-bad-seq")
                .await
                .as_deref(),
            Some("2")
        );
        b.screenshot("console-verify-failed", 1024).await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_a_forged_console_post_is_refused() {
    let v = TestVault::start(Backend::Sqlite).await;
    console::user(&v, "dana", "dpo").await;
    let id = console::awaiting(&v).await;
    let b = Browser::start().await;
    console_sign_in(&b, &v, "dana").await;
    // Another site posts an approval while the DPO is signed in.
    let path = format!("/console/requests/{id}");
    let forged = [("action", "approve"), ("csrf", "forged")];
    b.goto(&attacker_site(&v.url(&path), &forged).await).await;
    wait_for_path(&b, &path).await;
    assert_eq!(error_status(&b).await.as_deref(), Some("403"));
    b.screenshot("console-csrf-refused", 1024).await;
    // A token altered in the console's own form is refused too.
    b.goto(&v.url(&path)).await;
    b.client
        .execute(
            "document.querySelectorAll('input[name=csrf]').forEach(i => i.value = '0'.repeat(64))",
            vec![],
        )
        .await
        .unwrap();
    b.click("button[name=action][value=approve]").await;
    assert_eq!(error_status(&b).await.as_deref(), Some("403"));
    // Nothing happened.
    let dpo = v.token("dpo").await;
    let (_, view) = v.get(&dpo, &format!("/v1/requests/{id}")).await;
    assert_eq!(view["status"], "awaiting_approval", "{view}");
    assert!(
        v.audit()
            .await
            .iter()
            .all(|e| e.draft.action != "request.approved"),
        "no approval"
    );
    // The untouched form still works: the refusals were the tokens.
    b.goto(&v.url(&path)).await;
    b.click("button[name=action][value=approve]").await;
    assert_eq!(
        b.attr("[data-request-status]", "data-request-status")
            .await
            .as_deref(),
        Some("partially_completed")
    );
    b.close().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_the_console_cookie_is_httponly_strict_and_sign_out_ends_the_session() {
    let v = TestVault::start(Backend::Sqlite).await;
    console::user(&v, "dana", "dpo").await;
    let b = Browser::start().await;
    console_sign_in(&b, &v, "dana").await;
    let session = b
        .client
        .get_named_cookie("pv_console")
        .await
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true), "HttpOnly");
    assert_eq!(
        session.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    assert_eq!(session.path(), Some("/console"));
    assert_ne!(session.secure(), Some(true), "plain HTTP on loopback");
    let seen: Value = b
        .client
        .execute("return document.cookie", vec![])
        .await
        .expect("script");
    assert!(
        !seen.as_str().unwrap_or_default().contains("pv_console"),
        "{seen}"
    );
    assert!(!b.text().await.contains(session.value()));
    // The privacy center's pages never get it.
    b.goto(&v.url("/privacy/")).await;
    assert!(b.client.get_named_cookie("pv_console").await.is_err());

    // Sign-out: back on the sign-in form, the cookie gone…
    b.goto(&v.url("/console/requests")).await;
    b.click("form[action='/console/sign-out'] button[type=submit]")
        .await;
    on_sign_in_form(&b).await;
    assert!(b.client.get_named_cookie("pv_console").await.is_err());
    b.goto(&v.url("/console/requests")).await;
    on_sign_in_form(&b).await;
    // …and the session ended on the server: its id, put back, opens nothing.
    b.client
        .add_cookie(session.clone())
        .await
        .expect("cookie put back");
    b.goto(&v.url("/console/requests")).await;
    on_sign_in_form(&b).await;
    b.close().await;
}

/// What has the focus (its `name`, else its `href`, else its tag), and its
/// outline.
async fn focused(b: &Browser) -> Value {
    b.client
        .execute(
            "const e = document.activeElement; const s = getComputedStyle(e);
             return {name: e.getAttribute('name') || e.getAttribute('href') || e.tagName.toLowerCase(),
                     outline: s.outlineStyle, width: parseFloat(s.outlineWidth)};",
            vec![],
        )
        .await
        .expect("active element")
}

/// Tabs (at most 30 times) until the control named `name` (or the link to
/// it) has the focus;
/// every stop on the way shows a focus ring.
async fn tab_to(b: &Browser, name: &str) {
    for _ in 0..30 {
        b.keys(&char::from(Key::Tab).to_string()).await;
        let f = focused(b).await;
        assert!(
            f["outline"] != "none" && f["width"].as_f64().unwrap_or(0.0) >= 2.0,
            "the focus is visible: {f}"
        );
        if f["name"] == name {
            return;
        }
    }
    panic!("{name} is not reachable by Tab");
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_the_console_signs_in_by_keyboard_with_visible_focus() {
    let v = TestVault::start(Backend::Sqlite).await;
    console::user(&v, "dana", "dpo").await;
    let b = Browser::start().await;
    b.goto(&v.url("/console/")).await;
    tab_to(&b, "username").await;
    b.keys("dana").await;
    tab_to(&b, "password").await;
    b.keys(console::PASSWORD).await;
    b.screenshot("console-sign-in-keyboard", 1024).await;
    let old = b.css("html").await;
    b.keys(&char::from(Key::Enter).to_string()).await;
    b.wait_for_next_page(old).await;
    signed_in_home(&b).await;
    // A link of the console's navigation, by keyboard too.
    tab_to(&b, "/console/requests").await;
    let old = b.css("html").await;
    b.keys(&char::from(Key::Enter).to_string()).await;
    b.wait_for_next_page(old).await;
    assert_eq!(b.path().await, "/console/requests");
    b.close().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: .ci/browser.sh"]
async fn browser_the_console_in_italian_and_chinese() {
    let v = TestVault::start(Backend::Sqlite).await;
    console::user(&v, "dana", "dpo").await;
    let id = console::awaiting(&v).await;
    let b = Browser::start().await;
    b.goto(&v.url("/console/?lang=it")).await;
    assert_eq!(b.attr("html", "lang").await.as_deref(), Some("it"));
    assert!(b.text().await.contains("Accedi alla console"));
    b.screenshot("console-sign-in-it", 1024).await;
    // The choice holds after signing in.
    console_sign_in(&b, &v, "dana").await;
    assert_eq!(b.attr("html", "lang").await.as_deref(), Some("it"));
    assert!(b.text().await.contains("Console privacy"));
    b.goto(&v.url("/console/requests")).await;
    // The visible switch.
    b.click("a[hreflang='zh-Hans']").await;
    assert_eq!(b.path().await, "/console/requests");
    assert_eq!(b.attr("html", "lang").await.as_deref(), Some("zh-Hans"));
    assert!(b.text().await.contains("隐私控制台"));
    assert!(
        b.client
            .find(Locator::Css("tr[data-request-id]"))
            .await
            .is_ok()
    );
    b.screenshot("console-queue-zh-Hans", 1024).await;
    // At 320 px the console's pages fit too (wide tables scroll in place).
    b.client.set_window_size(320, 800).await.unwrap();
    for page in [
        "/console/requests".to_owned(),
        format!("/console/requests/{id}"),
    ] {
        b.goto(&v.url(&page)).await;
        assert_no_sideways_scrolling(&b).await;
    }
    b.screenshot("console-request-320px", 320).await;
    b.close().await;
}
