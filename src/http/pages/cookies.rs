//! Cookies of the pages: read from the request, and set with the flags the
//! pages promise: `HttpOnly`, `SameSite=Strict`, a `Path` of their own, and
//! `Secure` whenever the browser reached the vault over TLS (the vault's
//! `public_url` is `https://`, or a trusted proxy says
//! `X-Forwarded-Proto: https`).

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use crate::state::AppState;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn get<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether the browser reached the vault over TLS.
pub fn secure(parts: &Parts, state: &AppState) -> bool {
    if state
        .settings
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
    {
        return true;
    }
    let from_proxy = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| state.trusted_proxies.contains(c.0.ip()));
    from_proxy
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A cookie to set (or, with [`Cookie::removal`], to remove).
#[derive(Clone)]
pub struct Cookie {
    pub name: &'static str,
    pub value: String,
    pub path: &'static str,
    /// Seconds; `None` for a session cookie.
    pub max_age: Option<u64>,
}

impl Cookie {
    pub fn new(name: &'static str, value: impl Into<String>, path: &'static str) -> Self {
        Cookie {
            name,
            value: value.into(),
            path,
            max_age: None,
        }
    }

    pub fn max_age(mut self, secs: u64) -> Self {
        self.max_age = Some(secs);
        self
    }

    /// Tells the browser to forget the cookie.
    pub fn removal(name: &'static str, path: &'static str) -> Self {
        Cookie {
            name,
            value: String::new(),
            path,
            max_age: Some(0),
        }
    }

    /// The `Set-Cookie` header value. Values are the vault's own tokens
    /// (URL-safe characters); anything else is refused (`None`).
    pub fn header(&self, secure: bool) -> Option<HeaderValue> {
        let safe = self
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
        if !safe {
            return None;
        }
        let mut v = format!(
            "{}={}; Path={}; HttpOnly; SameSite=Strict",
            self.name, self.value, self.path
        );
        if let Some(age) = self.max_age {
            v.push_str(&format!("; Max-Age={age}"));
        }
        if secure {
            v.push_str("; Secure");
        }
        HeaderValue::from_str(&v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_always_set_and_secure_follows_tls() {
        let c = Cookie::new("pv_request", "pvr_abc-1", "/privacy/").max_age(60);
        assert_eq!(
            c.header(false).unwrap(),
            "pv_request=pvr_abc-1; Path=/privacy/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert!(
            c.header(true)
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        let gone = Cookie::removal("pv_request", "/privacy/")
            .header(false)
            .unwrap();
        assert!(gone.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn values_that_could_inject_attributes_are_refused() {
        assert!(
            Cookie::new("a", "x; Domain=evil", "/")
                .header(false)
                .is_none()
        );
        assert!(Cookie::new("a", "x\r\n", "/").header(false).is_none());
    }

    #[test]
    fn the_named_cookie_is_found_among_several() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; lang=it"));
        h.append(header::COOKIE, HeaderValue::from_static("pv_csrf=xyz"));
        assert_eq!(get(&h, "lang"), Some("it"));
        assert_eq!(get(&h, "pv_csrf"), Some("xyz"));
        assert_eq!(get(&h, "la"), None);
    }
}
