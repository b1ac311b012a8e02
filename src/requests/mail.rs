//! The text of the email messages the vault sends a customer itself
//! (`outbox_smtp_url`): one template per outbox kind and language, compiled
//! into the binary from `templates/mail/<language>/<kind>.txt`.
//!
//! A template's first line is `Subject: …` (generic: it names no person,
//! request or value), then a blank line, then the body. `{{name}}` is
//! replaced by a value of the outbox message: `request_id`, `request_kind`,
//! `code`, `expires_at`, `status`, `denial_reason`, `request_token`,
//! `due_at`. A paragraph naming a value the message does not have is left
//! out (e.g. the request token of a request the customer filed themself).
//! The only personal value a body can carry is the verification code.

use serde_json::Value;

use super::outbox;
use crate::language::Language;

/// A rendered message.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Mail {
    /// The subject only: the body may hold a code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The outbox kinds sent to customers by email.
pub const KINDS: [&str; 5] = [
    outbox::VERIFICATION_CODE,
    outbox::REQUEST_OUTCOME,
    outbox::REQUEST_FILED,
    outbox::REQUEST_EXTENDED,
    outbox::RESTRICTION_LIFT_NOTICE,
];

macro_rules! by_language {
    ($lang:expr, $kind:literal) => {
        match $lang {
            Language::En => include_str!(concat!("../../templates/mail/en/", $kind, ".txt")),
            Language::It => include_str!(concat!("../../templates/mail/it/", $kind, ".txt")),
            Language::ZhHans => {
                include_str!(concat!("../../templates/mail/zh-Hans/", $kind, ".txt"))
            }
        }
    };
}

/// The template of `kind` in `lang`; `None` for a kind not sent by email.
pub fn template(kind: &str, lang: Language) -> Option<&'static str> {
    Some(match kind {
        outbox::VERIFICATION_CODE => by_language!(lang, "verification_code"),
        outbox::REQUEST_OUTCOME => by_language!(lang, "request_outcome"),
        outbox::REQUEST_FILED => by_language!(lang, "request_filed"),
        outbox::REQUEST_EXTENDED => by_language!(lang, "request_extended"),
        outbox::RESTRICTION_LIFT_NOTICE => by_language!(lang, "restriction_lift_notice"),
        _ => return None,
    })
}

/// The value of placeholder `name` in an outbox message's body.
fn value_of(body: &Value, name: &str) -> Option<String> {
    let v = match name {
        "denial_reason" => body.get("denial")?.get("reason")?,
        _ => body.get(name)?,
    };
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Replaces the placeholders of one paragraph; `None` when one of them has
/// no value (the paragraph is then left out).
fn fill(paragraph: &str, body: &Value) -> Option<String> {
    let mut out = String::with_capacity(paragraph.len());
    let mut rest = paragraph;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let end = after.find("}}")?;
        let name = after.get(2..end)?.trim();
        out.push_str(&value_of(body, name)?);
        rest = after.get(end + 2..)?;
    }
    out.push_str(rest);
    Some(out)
}

/// The message of `kind` in `lang` for an outbox message's `body`; `None`
/// for a kind not sent by email.
pub fn render(kind: &str, lang: Language, body: &Value) -> Option<Mail> {
    let text = template(kind, lang)?;
    let (first, rest) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject:")?.trim().to_owned();
    let paragraphs: Vec<String> = rest
        .trim()
        .split("\n\n")
        .filter_map(|p| fill(p.trim_matches('\n'), body))
        .collect();
    Some(Mail {
        subject,
        body: paragraphs.join("\n\n") + "\n",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code_body(token: Option<&str>) -> Value {
        let mut b = json!({
            "request_id": "0190a1b2-0000-7000-8000-000000000001",
            "request_kind": "erasure",
            "code": "48213907",
            "expires_at": "2026-11-30T05:00:00Z",
        });
        if let Some(t) = token {
            b["request_token"] = json!(t);
        }
        b
    }

    #[test]
    fn every_kind_has_a_template_in_every_language_with_a_generic_subject() {
        for lang in Language::ALL {
            for kind in KINDS {
                let text = template(kind, lang).unwrap();
                assert!(text.starts_with("Subject: "), "{lang} {kind}");
                let subject = text.lines().next().unwrap();
                assert!(!subject.contains("{{"), "{lang} {kind}: {subject}");
                let mut all = code_body(Some("pvr_x"));
                all["status"] = json!("completed");
                all["due_at"] = json!("2026-12-30T05:00:00Z");
                let mail = render(kind, lang, &all).unwrap();
                assert!(!mail.body.contains("{{"), "{lang} {kind}");
                assert!(mail.body.contains("0190a1b2-0000-7000-8000-000000000001"));
            }
        }
        assert!(template(outbox::RECIPIENT_NOTICE, Language::En).is_none());
    }

    #[test]
    fn the_code_is_written_in_the_request_language() {
        let en = render(outbox::VERIFICATION_CODE, Language::En, &code_body(None)).unwrap();
        let it = render(outbox::VERIFICATION_CODE, Language::It, &code_body(None)).unwrap();
        let zh = render(
            outbox::VERIFICATION_CODE,
            Language::ZhHans,
            &code_body(None),
        )
        .unwrap();
        assert!(en.body.contains("Your verification code is: 48213907"));
        assert!(it.body.contains("Il tuo codice di verifica è: 48213907"));
        assert!(zh.body.contains("您的验证码是：48213907"));
        assert_eq!(
            it.subject,
            "La tua richiesta sulla privacy: codice di verifica"
        );
        assert_eq!(zh.subject, "您的隐私请求：验证码");
        for m in [&en, &it, &zh] {
            assert!(!m.subject.contains("48213907"));
            assert!(!format!("{m:?}").contains("48213907"));
        }
    }

    #[test]
    fn paragraphs_without_their_value_are_left_out() {
        let own = render(outbox::VERIFICATION_CODE, Language::En, &code_body(None)).unwrap();
        assert!(!own.body.contains("on your behalf"), "{}", own.body);
        let staff = render(
            outbox::VERIFICATION_CODE,
            Language::En,
            &code_body(Some("pvr_tok")),
        )
        .unwrap();
        assert!(staff.body.contains("on your behalf") && staff.body.contains("pvr_tok"));
        let done = json!({"request_id": "r1", "request_kind": "access", "status": "completed"});
        let m = render(outbox::REQUEST_OUTCOME, Language::It, &done).unwrap();
        assert!(m.body.contains("nuovo stato: completed") && !m.body.contains("Motivo"));
        let denied = json!({"request_id": "r1", "request_kind": "access", "status": "denied",
            "denial": {"reason": "identity_not_verified"}});
        let m = render(outbox::REQUEST_OUTCOME, Language::En, &denied).unwrap();
        assert!(
            m.body.contains("Reason: identity_not_verified"),
            "{}",
            m.body
        );
    }
}
