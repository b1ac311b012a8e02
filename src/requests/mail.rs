//! The text of the email messages the vault sends itself
//! (`outbox_smtp_url`): one template per outbox kind and language, compiled
//! into the binary from `templates/mail/<language>/<kind>.txt`; the notice
//! to a recipient (a company's system) is in English only.
//!
//! A template's first line is `Subject: …` (generic: it names no person,
//! request or value), then a blank line, then the body. `{{name}}` is
//! replaced by a value of the outbox message: `request_id`, `request_kind`,
//! `code`, `expires_at`, `status`, `denial_reason`, `request_token`,
//! `due_at`; for a recipient `message`, `customer_id` and `fields`. A
//! paragraph naming a value the message does not have is left out (e.g.
//! the request token of a request the customer filed themself).
//! The kind of request, its status and the reason of a denial are written
//! in words of the message's language, never as the API's names. The only
//! personal value a body can carry is the verification code.

use serde_json::Value;

use super::lifecycle::{DenialReason, Kind, Status};
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

/// The outbox kinds sent to customers by email, in their language.
pub const KINDS: [&str; 5] = [
    outbox::VERIFICATION_CODE,
    outbox::REQUEST_OUTCOME,
    outbox::REQUEST_FILED,
    outbox::REQUEST_EXTENDED,
    outbox::RESTRICTION_LIFT_NOTICE,
];

/// The notice to a recipient (GDPR Art. 19), sent to the `notice_email`
/// of its role: written to a company's system, in English only.
const RECIPIENT_NOTICE: &str = include_str!("../../templates/mail/en/recipient_notice.txt");

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
        outbox::RECIPIENT_NOTICE => RECIPIENT_NOTICE,
        _ => return None,
    })
}

/// The value of placeholder `name` in an outbox message's body, in words
/// of `lang` where it is one of the API's names (kind, status, reason).
fn value_of(body: &Value, name: &str, lang: Language) -> Option<String> {
    let v = match name {
        "denial_reason" => body.get("denial")?.get("reason")?,
        _ => body.get(name)?,
    };
    match v {
        Value::String(s) if !s.is_empty() => {
            let words = match name {
                "request_kind" => Kind::parse(s).map(|k| kind_words(k, lang)),
                "status" => Status::parse(s).map(|st| status_words(st, lang)),
                "denial_reason" => DenialReason::parse(s).map(|r| reason_words(r, lang)),
                _ => None,
            };
            Some(words.map_or_else(|| s.clone(), str::to_owned))
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            (!names.is_empty()).then(|| names.join(", "))
        }
        _ => None,
    }
}

/// A kind of request, in words.
fn kind_words(kind: Kind, lang: Language) -> &'static str {
    use Language::{En, It, ZhHans};
    match (kind, lang) {
        (Kind::Access, En) => "access to your data",
        (Kind::Access, It) => "accesso ai dati",
        (Kind::Access, ZhHans) => "访问个人数据",
        (Kind::Portability, En) => "data portability",
        (Kind::Portability, It) => "portabilità dei dati",
        (Kind::Portability, ZhHans) => "数据可携带",
        (Kind::Erasure, En) => "erasure",
        (Kind::Erasure, It) => "cancellazione",
        (Kind::Erasure, ZhHans) => "删除",
        (Kind::Rectification, En) => "correction",
        (Kind::Rectification, It) => "rettifica",
        (Kind::Rectification, ZhHans) => "更正",
        (Kind::Restriction, En) => "restriction of processing",
        (Kind::Restriction, It) => "limitazione del trattamento",
        (Kind::Restriction, ZhHans) => "限制处理",
        (Kind::Objection, En) => "objection to processing",
        (Kind::Objection, It) => "opposizione al trattamento",
        (Kind::Objection, ZhHans) => "反对处理",
        (Kind::OptOutSale, En) => "opt-out of sale or sharing",
        (Kind::OptOutSale, It) => "opposizione alla vendita o condivisione",
        (Kind::OptOutSale, ZhHans) => "选择退出出售或共享",
        (Kind::LimitSensitive, En) => "limiting the use of sensitive data",
        (Kind::LimitSensitive, It) => "limitazione dell'uso dei dati sensibili",
        (Kind::LimitSensitive, ZhHans) => "限制敏感个人信息的使用",
    }
}

/// A request's status, in words.
fn status_words(status: Status, lang: Language) -> &'static str {
    use Language::{En, It, ZhHans};
    match (status, lang) {
        (Status::Received, En) => "received",
        (Status::Received, It) => "ricevuta",
        (Status::Received, ZhHans) => "已收到",
        (Status::Verifying, En) => "waiting for your verification code",
        (Status::Verifying, It) => "in attesa del codice di verifica",
        (Status::Verifying, ZhHans) => "等待您的验证码",
        (Status::Verified, En) => "verified, being carried out",
        (Status::Verified, It) => "verificata, in corso",
        (Status::Verified, ZhHans) => "已验证，正在处理",
        (Status::AwaitingApproval, En) => "waiting for our privacy team",
        (Status::AwaitingApproval, It) => "in attesa del nostro team privacy",
        (Status::AwaitingApproval, ZhHans) => "等待我们的隐私团队处理",
        (Status::Completed, En) => "completed",
        (Status::Completed, It) => "completata",
        (Status::Completed, ZhHans) => "已完成",
        (Status::PartiallyCompleted, En) => "partly completed",
        (Status::PartiallyCompleted, It) => "completata in parte",
        (Status::PartiallyCompleted, ZhHans) => "部分完成",
        (Status::Denied, En) => "refused",
        (Status::Denied, It) => "respinta",
        (Status::Denied, ZhHans) => "已拒绝",
        (Status::Merged, En) => "joined to an earlier request of yours",
        (Status::Merged, It) => "unita a una tua richiesta precedente",
        (Status::Merged, ZhHans) => "已与您先前的请求合并",
    }
}

/// Why a request was refused, in words.
fn reason_words(reason: DenialReason, lang: Language) -> &'static str {
    use DenialReason as R;
    use Language::{En, It, ZhHans};
    match (reason, lang) {
        (R::IdentityNotVerified, En) => "we could not verify that the request is yours",
        (R::IdentityNotVerified, It) => "non abbiamo potuto verificare che la richiesta sia tua",
        (R::IdentityNotVerified, ZhHans) => "我们无法核实该请求是您本人提出的",
        (R::TooManyAttempts, En) => "too many wrong verification codes were entered",
        (R::TooManyAttempts, It) => "sono stati inseriti troppi codici di verifica errati",
        (R::TooManyAttempts, ZhHans) => "输入错误验证码的次数过多",
        (R::ManifestlyUnfounded, En) => "the request is manifestly unfounded",
        (R::ManifestlyUnfounded, It) => "la richiesta è manifestamente infondata",
        (R::ManifestlyUnfounded, ZhHans) => "该请求明显缺乏依据",
        (R::Excessive, En) => "the request is excessive",
        (R::Excessive, It) => "la richiesta è eccessiva",
        (R::Excessive, ZhHans) => "该请求过度",
        (R::LegalObligation, En) => "the law requires us to keep the data",
        (R::LegalObligation, It) => "la legge ci obbliga a conservare i dati",
        (R::LegalObligation, ZhHans) => "法律要求我们保留这些数据",
        (R::LegalClaims, En) => "the data is needed for legal claims",
        (R::LegalClaims, It) => "i dati servono per far valere o difendere un diritto in giudizio",
        (R::LegalClaims, ZhHans) => "这些数据用于提出或抗辩法律主张",
        (R::FreedomOfExpression, En) => "freedom of expression and information",
        (R::FreedomOfExpression, It) => "libertà di espressione e di informazione",
        (R::FreedomOfExpression, ZhHans) => "言论和信息自由",
        (R::PublicInterest, En) => "reasons of public interest",
        (R::PublicInterest, It) => "motivi di interesse pubblico",
        (R::PublicInterest, ZhHans) => "公共利益",
        (R::RightsOfOthers, En) => "it would affect the rights of others",
        (R::RightsOfOthers, It) => "lederebbe i diritti di altre persone",
        (R::RightsOfOthers, ZhHans) => "会损害他人的权利",
        (R::Other, En) => "other reasons, shown with the request's status",
        (R::Other, It) => "altri motivi, indicati nello stato della richiesta",
        (R::Other, ZhHans) => "其他原因，可在请求状态中查看",
    }
}

/// Replaces the placeholders of one paragraph; `None` when one of them has
/// no value (the paragraph is then left out).
fn fill(paragraph: &str, body: &Value, lang: Language) -> Option<String> {
    let mut out = String::with_capacity(paragraph.len());
    let mut rest = paragraph;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let end = after.find("}}")?;
        let name = after.get(2..end)?.trim();
        out.push_str(&value_of(body, name, lang)?);
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
        .filter_map(|p| fill(p.trim_matches('\n'), body, lang))
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
        assert!(template("no_such_kind", Language::En).is_none());
    }

    #[test]
    fn a_recipient_notice_names_the_customer_by_id_and_the_fields_by_name() {
        let body = json!({"notice": "rectification", "customer_id": "0190a1b2-0000-7000-8000-000000000009",
            "request_id": null, "fields": ["email", "phone"],
            "message": "The customer's data you received was rectified: read it again from the vault and replace your copy (GDPR Art. 16, 19)."});
        for lang in Language::ALL {
            let m = render(outbox::RECIPIENT_NOTICE, lang, &body).unwrap();
            assert_eq!(
                m.subject,
                "Notice about personal data you received (GDPR Art. 19)"
            );
            assert!(
                m.body.contains("was rectified: read it again"),
                "{}",
                m.body
            );
            assert!(
                m.body
                    .contains("Customer: 0190a1b2-0000-7000-8000-000000000009"),
                "{}",
                m.body
            );
            assert!(m.body.contains("Fields: email, phone"), "{}", m.body);
            assert!(
                !m.body.contains("Request:") && !m.body.contains("{{"),
                "{}",
                m.body
            );
        }
        let mut erased = body.clone();
        erased["fields"] = json!([]);
        erased["request_id"] = json!("0190a1b2-0000-7000-8000-00000000000a");
        let m = render(outbox::RECIPIENT_NOTICE, Language::It, &erased).unwrap();
        assert!(!m.body.contains("Fields:"), "{}", m.body);
        assert!(
            m.body
                .contains("Request: 0190a1b2-0000-7000-8000-00000000000a"),
            "{}",
            m.body
        );
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
        assert!(m.body.contains("nuovo stato: completata") && !m.body.contains("Motivo"));
        let denied = json!({"request_id": "r1", "request_kind": "access", "status": "denied",
            "denial": {"reason": "identity_not_verified"}});
        let m = render(outbox::REQUEST_OUTCOME, Language::En, &denied).unwrap();
        assert!(
            m.body
                .contains("Reason: we could not verify that the request is yours"),
            "{}",
            m.body
        );
    }

    #[test]
    fn kinds_statuses_and_reasons_are_written_in_words_of_the_language() {
        let outcome = |lang, kind: Kind, status: Status, reason: Option<DenialReason>| {
            let mut body = json!({"request_id": "r1", "request_kind": kind.as_str(),
                "status": status.as_str()});
            if let Some(r) = reason {
                body["denial"] = json!({"reason": r.as_str()});
            }
            render(outbox::REQUEST_OUTCOME, lang, &body).unwrap().body
        };
        let it = outcome(
            Language::It,
            Kind::Erasure,
            Status::Denied,
            Some(DenialReason::LegalObligation),
        );
        assert!(it.contains("tipo: cancellazione"), "{it}");
        assert!(it.contains("nuovo stato: respinta"), "{it}");
        assert!(
            it.contains("Motivo: la legge ci obbliga a conservare i dati"),
            "{it}"
        );
        let zh = outcome(
            Language::ZhHans,
            Kind::Access,
            Status::PartiallyCompleted,
            None,
        );
        assert!(zh.contains("类型：访问个人数据"), "{zh}");
        assert!(zh.contains("新的状态：部分完成"), "{zh}");
        // No API name reaches an Italian or Chinese reader; every name has
        // its own words in each language.
        for lang in [Language::It, Language::ZhHans] {
            for &kind in Kind::ALL {
                for &status in Status::ALL {
                    for &reason in DenialReason::ALL {
                        let body = outcome(lang, kind, status, Some(reason));
                        let words: Vec<&str> = body
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .collect();
                        for name in [kind.as_str(), status.as_str(), reason.as_str()] {
                            assert!(!words.contains(&name), "{lang} {name}: {body}");
                        }
                    }
                }
            }
        }
        for lang in Language::ALL {
            let words: std::collections::BTreeSet<&str> =
                Status::ALL.iter().map(|&s| status_words(s, lang)).collect();
            assert_eq!(words.len(), Status::ALL.len(), "{lang}");
            let words: std::collections::BTreeSet<&str> =
                Kind::ALL.iter().map(|&k| kind_words(k, lang)).collect();
            assert_eq!(words.len(), Kind::ALL.len(), "{lang}");
            let words: std::collections::BTreeSet<&str> = DenialReason::ALL
                .iter()
                .map(|&r| reason_words(r, lang))
                .collect();
            assert_eq!(words.len(), DenialReason::ALL.len(), "{lang}");
        }
    }
}
