//! Templates compiled into the binary (`pages/templates/`), rendered with
//! minijinja. HTML is escaped automatically (`.html` templates). Text comes
//! from the Fluent catalogs through `t("key", name=value)`, in the language
//! of the page (the `lang` variable every page has); a key no catalog
//! declares is a render error, so a missing translation cannot ship
//! silently (a unit test renders every template in every language).

use std::sync::LazyLock;

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, State, Value};

use super::i18n;
use crate::language::Language;

/// Every template, by name. A page worker adds its own here.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../pages/templates/base.html"),
    ),
    (
        "error.html",
        include_str!("../../../pages/templates/error.html"),
    ),
    (
        "privacy/layout.html",
        include_str!("../../../pages/templates/privacy/layout.html"),
    ),
    (
        "privacy/index.html",
        include_str!("../../../pages/templates/privacy/index.html"),
    ),
    (
        "privacy/request.html",
        include_str!("../../../pages/templates/privacy/request.html"),
    ),
    (
        "privacy/verify.html",
        include_str!("../../../pages/templates/privacy/verify.html"),
    ),
    (
        "privacy/status.html",
        include_str!("../../../pages/templates/privacy/status.html"),
    ),
    (
        "console/layout.html",
        include_str!("../../../pages/templates/console/layout.html"),
    ),
    (
        "console/error.html",
        include_str!("../../../pages/templates/console/error.html"),
    ),
    (
        "console/sign_in.html",
        include_str!("../../../pages/templates/console/sign_in.html"),
    ),
    (
        "console/home.html",
        include_str!("../../../pages/templates/console/home.html"),
    ),
    (
        "console/queue.html",
        include_str!("../../../pages/templates/console/queue.html"),
    ),
    (
        "console/request.html",
        include_str!("../../../pages/templates/console/request.html"),
    ),
    (
        "console/holds.html",
        include_str!("../../../pages/templates/console/holds.html"),
    ),
    (
        "console/metrics.html",
        include_str!("../../../pages/templates/console/metrics.html"),
    ),
    (
        "console/trail.html",
        include_str!("../../../pages/templates/console/trail.html"),
    ),
    (
        "console/access_log.html",
        include_str!("../../../pages/templates/console/access_log.html"),
    ),
    (
        "console/verify.html",
        include_str!("../../../pages/templates/console/verify.html"),
    ),
    (
        "privacy/export.html",
        include_str!("../../../pages/templates/privacy/export.html"),
    ),
    (
        "privacy/consents.html",
        include_str!("../../../pages/templates/privacy/consents.html"),
    ),
    (
        "privacy/explicit.html",
        include_str!("../../../pages/templates/privacy/explicit.html"),
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "page template does not compile");
        }
    }
    env.add_function("t", translate);
    env.add_function("t_or", translate_or);
    env.add_filter("when", when);
    env
});

/// `t("key", name=value, …)`: the catalog text of `key` in the page's
/// language.
fn translate(state: &State, key: &str, kwargs: Kwargs) -> Result<String, Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Language::parse))
        .unwrap_or_default();
    if !i18n::has(Language::En, key) {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            format!("no catalog declares the message {key}"),
        ));
    }
    let mut args = Vec::new();
    for name in kwargs.args() {
        let v: Value = kwargs.get(name)?;
        args.push((name, v.to_string()));
    }
    Ok(if args.is_empty() {
        i18n::text(lang, key)
    } else {
        i18n::text_with(lang, key, &args)
    })
}

/// `t_or("key", fallback)`: the catalog text of `key` when a catalog
/// declares it, else `fallback` (for names that come from the policy, such
/// as field and role names, which the catalogs may label).
fn translate_or(state: &State, key: &str, fallback: &str) -> String {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Language::parse))
        .unwrap_or_default();
    if i18n::has(Language::En, key) {
        i18n::text(lang, key)
    } else {
        fallback.to_owned()
    }
}

/// `time|when`: an RFC 3339 time as the pages show it,
/// `2026-03-01 14:05 UTC`; other text unchanged.
pub fn when(time: &str) -> String {
    match (time.get(..16), time.as_bytes().get(10)) {
        (Some(s), Some(b'T')) => format!("{} UTC", s.replace('T', " ")),
        _ => time.to_owned(),
    }
}

/// Renders `template` with `ctx`.
pub fn render(template: &str, ctx: Value) -> Result<String, Error> {
    ENV.get_template(template)?.render(ctx)
}
