//! Page text from Fluent catalogs compiled into the binary
//! (`pages/locales/<lang>/*.ftl`: `common.ftl` for every page, one file per
//! area such as `privacy.ftl`), and the language of a page: `?lang=` (which
//! also sets the `lang` cookie), else the `lang` cookie, else the best of
//! `Accept-Language`, else English.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader, langid};

use crate::language::Language;

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./pages/locales",
        fallback_language: "en",
        // No Unicode isolation marks around arguments: the pages are
        // plain HTML and the marks would end up in form values and tests.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static EN: LanguageIdentifier = langid!("en");
static IT: LanguageIdentifier = langid!("it");
static ZH_HANS: LanguageIdentifier = langid!("zh-Hans");

fn identifier(lang: Language) -> &'static LanguageIdentifier {
    match lang {
        Language::En => &EN,
        Language::It => &IT,
        Language::ZhHans => &ZH_HANS,
    }
}

/// The text of `key` in `lang` (English when the catalog lacks it; the key
/// itself when no catalog has it, which a unit test rules out for every
/// key the templates use).
pub fn text(lang: Language, key: &str) -> String {
    LOCALES
        .try_lookup(identifier(lang), key)
        .unwrap_or_else(|| key.to_owned())
}

/// [`text`] with Fluent arguments (`{ $name }`). An argument that is a
/// whole number is passed as a number, so plural rules apply to it.
pub fn text_with(lang: Language, key: &str, args: &[(&str, String)]) -> String {
    let args: HashMap<Cow<'static, str>, FluentValue> = args
        .iter()
        .map(|(k, v)| {
            let value = match v.parse::<i64>() {
                Ok(n) => FluentValue::from(n),
                Err(_) => FluentValue::from(v.clone()),
            };
            (Cow::Owned((*k).to_owned()), value)
        })
        .collect();
    LOCALES
        .try_lookup_with_args(identifier(lang), key, &args)
        .unwrap_or_else(|| key.to_owned())
}

/// Whether `key` exists in the catalogs of `lang` itself (no fallback).
/// A message that needs arguments formats with errors when given none,
/// but exists (the loader does not export its error type: its variant is
/// told by name).
pub fn has(lang: Language, key: &str) -> bool {
    match LOCALES.lookup_single_language::<&str>(identifier(lang), key, None) {
        Ok(_) => true,
        Err(e) => format!("{e:?}").starts_with("FluentError"),
    }
}

/// The language a page is shown in.
pub fn negotiate(
    query_lang: Option<&str>,
    cookie_lang: Option<&str>,
    accept_language: Option<&str>,
) -> Language {
    query_lang
        .and_then(Language::matching)
        .or_else(|| cookie_lang.and_then(Language::parse))
        .or_else(|| accept_language.and_then(Language::from_accept_language))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of every English catalog, by file.
    fn keys(lang: &str) -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pages/locales")
            .join(lang);
        let mut out = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                let first = line.chars().next();
                if first.is_some_and(|c| c.is_ascii_lowercase())
                    && let Some((key, _)) = line.split_once(" =")
                {
                    out.push((name.clone(), key.trim().to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn every_catalog_translates_every_english_message() {
        let en = keys("en");
        assert!(en.len() > 20, "the English catalogs are read");
        for lang in ["it", "zh-Hans"] {
            let theirs = keys(lang);
            let missing: Vec<_> = en.iter().filter(|k| !theirs.contains(k)).collect();
            assert!(missing.is_empty(), "{lang} lacks {missing:?}");
            let extra: Vec<_> = theirs.iter().filter(|k| !en.contains(k)).collect();
            assert!(
                extra.is_empty(),
                "{lang} has messages English lacks: {extra:?}"
            );
        }
        for (_, key) in &en {
            for lang in Language::ALL {
                assert!(has(lang, key), "{key} does not resolve in {lang}");
            }
        }
    }

    #[test]
    fn the_three_languages_differ() {
        let en = text(Language::En, "common-language-switch");
        let it = text(Language::It, "common-language-switch");
        let zh = text(Language::ZhHans, "common-language-switch");
        assert!(en != it && it != zh && en != zh, "{en} {it} {zh}");
    }

    #[test]
    fn query_then_cookie_then_accept_language_then_english() {
        use Language::*;
        assert_eq!(negotiate(Some("it"), Some("en"), Some("zh")), It);
        assert_eq!(negotiate(Some("zh-CN"), None, None), ZhHans);
        assert_eq!(negotiate(Some("zh"), None, None), ZhHans);
        assert_eq!(negotiate(Some("fr"), Some("it"), None), It);
        assert_eq!(negotiate(None, Some("zh-Hans"), Some("it")), ZhHans);
        assert_eq!(negotiate(None, Some("bogus"), Some("it-IT,en;q=0.5")), It);
        assert_eq!(negotiate(None, None, Some("zh-CN,zh;q=0.9")), ZhHans);
        assert_eq!(negotiate(None, None, Some("de")), En);
        assert_eq!(negotiate(None, None, None), En);
    }
}
