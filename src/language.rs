//! The languages the vault writes to customers in: English, Italian and
//! Simplified Chinese. A request records the one it was filed in (the
//! `language` of `POST /v1/requests`, else the caller's `Accept-Language`,
//! else English), and every message to the customer about it uses it.

use serde::{Deserialize, Serialize};

/// A language the vault writes in; its tag is the BCP 47 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Language {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "it")]
    It,
    #[serde(rename = "zh-Hans")]
    ZhHans,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::En, Language::It, Language::ZhHans];

    /// The tag: `en`, `it` or `zh-Hans`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::It => "it",
            Language::ZhHans => "zh-Hans",
        }
    }

    /// Exactly one of the tags [`Language::as_str`] gives (what the API
    /// accepts and the store holds).
    pub fn parse(tag: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.as_str() == tag)
    }

    /// The language a BCP 47 tag asks for, if it is one the vault writes:
    /// `en-GB` is English, `it-CH` Italian, and `zh`, `zh-CN`, `zh-SG`,
    /// `zh-Hans…` Simplified Chinese (`zh-TW`, `zh-HK`, `zh-Hant` are not).
    /// Case-insensitive.
    pub fn matching(tag: &str) -> Option<Language> {
        let tag = tag.trim().to_ascii_lowercase();
        let mut parts = tag.split(['-', '_']);
        match parts.next()? {
            "en" => Some(Language::En),
            "it" => Some(Language::It),
            "zh" => {
                let rest: Vec<&str> = parts.collect();
                let traditional = rest
                    .iter()
                    .any(|p| matches!(*p, "hant" | "tw" | "hk" | "mo"));
                let simplified = rest.contains(&"hans");
                (simplified || !traditional).then_some(Language::ZhHans)
            }
            _ => None,
        }
    }

    /// The preferred language of an `Accept-Language` header among the
    /// vault's: the highest `q` wins, earlier entries break ties, `q=0`
    /// entries and unknown languages are skipped. `None` when the header
    /// names none of them.
    pub fn from_accept_language(header: &str) -> Option<Language> {
        let mut best: Option<(u16, Language)> = None;
        for entry in header.split(',') {
            let mut parts = entry.split(';');
            let tag = parts.next().unwrap_or_default();
            let mut q: u16 = 1000;
            for param in parts {
                if let Some(v) = param.trim().strip_prefix("q=") {
                    q = parse_q(v).unwrap_or(0);
                }
            }
            let Some(lang) = Language::matching(tag) else {
                continue;
            };
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }
}

/// A quality value (`0`, `0.5`, `1.000`) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let v = v.trim();
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let frac: u16 = format!("{frac:0<3}").parse().ok()?;
    let q = whole + frac;
    (q <= 1000).then_some(q)
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_exactly() {
        for l in Language::ALL {
            assert_eq!(Language::parse(l.as_str()), Some(l));
        }
        assert_eq!(Language::parse("EN"), None);
        assert_eq!(Language::parse("zh"), None);
        assert_eq!(Language::parse("fr"), None);
    }

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        let pick = Language::from_accept_language;
        assert_eq!(pick("it-IT,it;q=0.9,en;q=0.8"), Some(Language::It));
        assert_eq!(pick("fr-FR, it;q=0.5, en;q=0.4"), Some(Language::It));
        assert_eq!(pick("en;q=0.3, zh-CN;q=0.8"), Some(Language::ZhHans));
        assert_eq!(pick("zh-Hans-CN"), Some(Language::ZhHans));
        assert_eq!(pick("zh"), Some(Language::ZhHans));
        assert_eq!(pick("zh-TW, it;q=0.2"), Some(Language::It));
        assert_eq!(pick("zh-Hant"), None);
        assert_eq!(pick("it;q=0, en;q=0.1"), Some(Language::En));
        assert_eq!(pick("de, fr"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("*"), None);
        assert_eq!(pick("it;q=abc, en;q=0.1"), Some(Language::En));
        // Ties go to the earlier entry.
        assert_eq!(pick("en, it"), Some(Language::En));
        assert_eq!(pick("IT-ch"), Some(Language::It));
    }
}
