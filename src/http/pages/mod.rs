//! The HTML pages: the customers' privacy center (`/privacy/`, [`privacy`]),
//! the staff console (`/console/`, [`console`]) and the foundation every
//! page area builds on.
//!
//! - [`render`]: templates compiled into the binary, text from the Fluent
//!   catalogs ([`i18n`]) in the page's language;
//! - [`Page`]: what every page handler starts from: the language
//!   (`?lang=`, the `lang` cookie, `Accept-Language`), the CSRF binding,
//!   whether the browser came over TLS, the GPC signal, the request id and
//!   the client's address; it renders a template into a response with the
//!   cookies to set;
//! - [`Form`]: a POST form body, refused with 403 unless its `csrf` field
//!   matches ([`csrf`]);
//! - [`cookies`]: HttpOnly, SameSite=Strict, path-scoped, Secure under TLS;
//! - [`headers`]: the page security headers (a CSP without `unsafe-inline`,
//!   `frame-ancestors 'none'`, no referrer, no caching);
//! - `/static/`: the style sheet, served as a file.
//!
//! Pages call the same functions as the JSON API (`crate::requests`,
//! `crate::audit::service`, `crate::customers`, and for a request token's
//! holder `crate::http::requests`), never the store, so a page can do
//! nothing the API would refuse. Page routes are not in `/openapi.json`.

pub mod console;
pub mod cookies;
pub mod csrf;
pub mod i18n;
pub mod privacy;
pub mod render;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::extract::{Client, RequestId};
use crate::actor::ClientAddr;
use crate::language::Language;
use crate::state::AppState;
use cookies::Cookie;

/// The pages' Content-Security-Policy: nothing inline, nothing from
/// elsewhere, no framing, forms post only to the vault.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The cookie remembering the language chosen with the switch.
pub const LANG_COOKIE: &str = "lang";

/// The page routes: the privacy center, the console and the static files.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(privacy::routes())
        .merge(console::routes())
        .route("/static/pages.css", axum::routing::get(stylesheet))
        .layer(middleware::from_fn(headers))
}

/// Whether `path` is one of the pages' (answered as HTML, never as JSON).
pub fn is_page(path: &str) -> bool {
    ["/privacy", "/console", "/static"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Security headers of every page and static file.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    secure(&mut resp);
    resp
}

/// Sets the pages' security headers on `resp`.
pub fn secure(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// The style sheet (no personal data: cacheable for a day).
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../../pages/static/pages.css"),
    )
        .into_response()
}

/// A language in the switch.
#[derive(Serialize, Debug, Clone)]
struct LangLink {
    tag: &'static str,
    href: String,
    current: bool,
}

/// What every page handler starts from.
pub struct Page {
    pub lang: Language,
    /// The browser reached the vault over TLS (cookies get `Secure`).
    pub secure: bool,
    /// `Sec-GPC: 1` came with the request.
    pub gpc: bool,
    pub request_id: String,
    pub client: Option<ClientAddr>,
    /// The request's path (for the language switch).
    pub path: String,
    csrf_binding: String,
    set_cookies: Vec<Cookie>,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let query_lang = parts.uri.query().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "lang")
                .map(|(_, v)| v)
        });
        let lang = i18n::negotiate(
            query_lang.as_deref(),
            cookies::get(&parts.headers, LANG_COOKIE),
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        );
        let mut set_cookies = Vec::new();
        if query_lang.as_deref().and_then(Language::matching).is_some() {
            set_cookies.push(Cookie::new(LANG_COOKIE, lang.as_str(), "/").max_age(365 * 86_400));
        }
        let csrf_binding = match cookies::get(&parts.headers, csrf::COOKIE) {
            Some(b) if csrf::well_formed(b) => b.to_owned(),
            _ => {
                let b = csrf::new_binding().ok_or_else(|| {
                    error_page(
                        lang,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "common-error-internal",
                    )
                })?;
                set_cookies.push(Cookie::new(csrf::COOKIE, b.clone(), "/"));
                b
            }
        };
        let RequestId(request_id) = RequestId::from_request_parts(parts, state)
            .await
            .unwrap_or(RequestId(String::new()));
        let Client(client) = Client::from_request_parts(parts, state)
            .await
            .unwrap_or(Client(None));
        Ok(Page {
            lang,
            secure: cookies::secure(parts, state),
            gpc: super::requests::gpc(&parts.headers),
            request_id,
            client,
            path: parts.uri.path().to_owned(),
            csrf_binding,
            set_cookies,
        })
    }
}

impl Page {
    /// Sets a cookie with the answer.
    pub fn set_cookie(&mut self, cookie: Cookie) {
        self.set_cookies.push(cookie);
    }

    /// The CSRF token for this page's forms.
    pub fn csrf_token(&self, state: &AppState) -> String {
        csrf::token(state, &self.csrf_binding)
    }

    /// The variables every template has: `lang`, `langs` (the switch),
    /// `csrf`, `gpc`, `path`.
    fn base(&self, state: &AppState) -> Value {
        let langs: Vec<LangLink> = Language::ALL
            .into_iter()
            .map(|l| LangLink {
                tag: l.as_str(),
                href: format!("{}?lang={}", self.path, l.as_str()),
                current: l == self.lang,
            })
            .collect();
        context! {
            lang => self.lang.as_str(),
            langs => Value::from(minijinja::value::Serde(langs)),
            csrf => self.csrf_token(state),
            gpc => self.gpc,
            path => self.path.clone(),
        }
    }

    /// `template` rendered with `ctx` (and the base variables), as an
    /// HTML answer with `status` and the cookies to set.
    pub fn render(
        &self,
        state: &AppState,
        status: StatusCode,
        template: &str,
        ctx: Value,
    ) -> Response {
        let ctx = context! { ..ctx, ..self.base(state) };
        match render::render(template, ctx) {
            Ok(html) => self.finish(html_response(status, html)),
            Err(e) => {
                tracing::error!(template, error = %e, "page did not render");
                self.finish(error_page(
                    self.lang,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "common-error-internal",
                ))
            }
        }
    }

    /// An error page in the page's language, in the page's area (its own
    /// way back): `message` is a catalog key.
    pub fn error(&self, status: StatusCode, message: &str) -> Response {
        self.finish(error_page_in(
            error_template(&self.path),
            self.lang,
            status,
            message,
        ))
    }

    /// 303 See Other to `to` (a path of the vault), with the cookies.
    pub fn redirect(&self, to: &str) -> Response {
        let mut resp = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        self.finish(resp)
    }

    fn finish(&self, mut resp: Response) -> Response {
        for c in &self.set_cookies {
            if let Some(v) = c.header(self.secure) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        resp
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// The error page of the area `path` is in: the console's leads back to
/// the console, every other to the privacy center.
fn error_template(path: &str) -> &'static str {
    if path == console::SESSION_PATH || path.starts_with("/console/") {
        "console/error.html"
    } else {
        "error.html"
    }
}

/// A self-contained error page (no CSRF token, no cookies).
pub fn error_page(lang: Language, status: StatusCode, message: &str) -> Response {
    error_page_in("error.html", lang, status, message)
}

/// [`error_page`] with the area's own `template`.
fn error_page_in(template: &str, lang: Language, status: StatusCode, message: &str) -> Response {
    let ctx = context! {
        lang => lang.as_str(),
        langs => Value::from(Vec::<Value>::new()),
        csrf => "",
        gpc => false,
        path => "",
        status => status.as_u16(),
        message => message,
    };
    match render::render(template, ctx) {
        Ok(html) => html_response(status, html),
        Err(e) => {
            tracing::error!(error = %e, "the error page did not render");
            html_response(
                status,
                format!("<!doctype html><title>{}</title>", status.as_u16()),
            )
        }
    }
}

/// A POST form (`application/x-www-form-urlencoded`) whose `csrf` field is
/// the token of the browser's `pv_csrf` cookie; otherwise 403 and the
/// handler never runs. A body that does not fit `T` is 400.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let page = Page::from_request_parts(&mut parts, state).await?;
        let refuse = |status, key| page.error(status, key);
        let binding = cookies::get(&parts.headers, csrf::COOKIE)
            .filter(|b| csrf::well_formed(b))
            .map(str::to_owned);
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "common-error-too-large"))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "common-error-bad-form"))?;
        let submitted = pairs
            .iter()
            .find(|(k, _)| k == csrf::FIELD)
            .map(|(_, v)| v.as_str());
        match (binding, submitted) {
            (Some(b), Some(t)) if csrf::check(state, &b, t) => {}
            _ => return Err(refuse(StatusCode::FORBIDDEN, "common-error-csrf")),
        }
        let value = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "common-error-bad-form"))?;
        Ok(Form(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template renders in every language with every message it
    /// names (a missing message is a render error).
    #[test]
    fn every_template_renders_in_every_language() {
        for (name, _) in render::TEMPLATES {
            if name.ends_with("base.html") || name.ends_with("layout.html") {
                continue;
            }
            for lang in Language::ALL {
                let ctx = if name.starts_with("console/") {
                    console::sample_context(name, lang)
                } else {
                    privacy::sample_context(name, lang)
                };
                let html =
                    render::render(name, ctx).unwrap_or_else(|e| panic!("{name} in {lang}: {e:#}"));
                assert!(
                    html.contains(&format!("<html lang=\"{}\"", lang.as_str())),
                    "{name} sets <html lang>"
                );
                assert!(!html.contains("<script>"), "{name}: no inline script");
                assert!(!html.contains(" style="), "{name}: no inline style");
            }
        }
    }
}
