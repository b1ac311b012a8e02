//! Validation, normalisation and masking of field values, per field type.
//!
//! A [`ValueError`] only ever carries a fixed description of what is wrong,
//! never the value or any part of it, so it can go into an error body or a
//! log line as is.

use std::fmt;

use time::{Date, Month};

use super::{FieldType, Mask};

/// Why a value was refused: a fixed text that never includes the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueError(&'static str);

impl ValueError {
    pub fn message(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ValueError {}

const MAX_EMAIL_LEN: usize = 254;
const MAX_EMAIL_LOCAL_LEN: usize = 64;
const MAX_DOMAIN_LABEL_LEN: usize = 63;
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;
const MAX_NAME_CHARS: usize = 200;
const MAX_ADDRESS_CHARS: usize = 500;
const MAX_TEXT_CHARS: usize = 10_000;
const NATIONAL_ID_CHARS: std::ops::RangeInclusive<usize> = 4..=32;
const IBAN_CHARS: std::ops::RangeInclusive<usize> = 15..=34;

/// Validates `raw` as a value of type `ty` and returns its normal form, the
/// form that is stored, compared and blind-indexed.
pub fn normalize(ty: FieldType, raw: &str) -> Result<String, ValueError> {
    match ty {
        FieldType::Email => email(raw),
        FieldType::Phone => phone(raw),
        FieldType::Date => date(raw),
        FieldType::Name => free_text(raw, &NAME),
        FieldType::Address => free_text(raw, &ADDRESS),
        FieldType::Text => free_text(raw, &TEXT),
        FieldType::NationalId => national_id(raw),
        FieldType::Iban => iban(raw),
    }
}

/// The value as seen through `mask`; `None` when the mask hides it.
pub fn apply_mask(mask: Mask, value: &str) -> Option<String> {
    match mask {
        Mask::Hidden => None,
        Mask::Last4 => {
            let chars: Vec<char> = value.chars().collect();
            if chars.len() <= 4 {
                Some("••••".to_owned())
            } else {
                let last4: String = chars[chars.len() - 4..].iter().collect();
                Some(format!("•••• {last4}"))
            }
        }
        Mask::Email => match value.rsplit_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                Some(format!("{first}•••@{domain}"))
            }
            None => Some("•••".to_owned()),
        },
    }
}

fn email(raw: &str) -> Result<String, ValueError> {
    let value = raw.trim().to_lowercase();
    if value.is_empty() {
        return Err(ValueError("an email address must not be empty"));
    }
    if value.len() > MAX_EMAIL_LEN {
        return Err(ValueError(
            "an email address must be at most 254 bytes long",
        ));
    }
    let mut parts = value.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ValueError("an email address must contain exactly one @"));
    };
    if local.is_empty() || local.len() > MAX_EMAIL_LOCAL_LEN {
        return Err(ValueError(
            "the part of an email address before @ must be 1 to 64 bytes long",
        ));
    }
    let local_char_ok = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    if !local.chars().all(local_char_ok)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(ValueError(
            "the part of an email address before @ is not valid",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= MAX_DOMAIN_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let top_level_ok = labels
        .last()
        .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || !top_level_ok {
        return Err(ValueError("the domain of an email address is not valid"));
    }
    Ok(value)
}

fn phone(raw: &str) -> Result<String, ValueError> {
    let compact: String = raw
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    let valid = digits.bytes().all(|b| b.is_ascii_digit())
        && PHONE_DIGITS.contains(&digits.len())
        && !digits.starts_with('0');
    if valid {
        Ok(compact)
    } else {
        Err(ValueError(
            "not a valid E.164 phone number (+ and country code, then 8 to 15 digits in all)",
        ))
    }
}

fn date(raw: &str) -> Result<String, ValueError> {
    const FORMAT: ValueError = ValueError("a date must be written YYYY-MM-DD");
    let value = raw.trim();
    let bytes = value.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(FORMAT);
    }
    let number = |range: std::ops::Range<usize>| value.get(range).and_then(|s| s.parse().ok());
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return Err(FORMAT);
    };
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or(ValueError("not a real calendar date"))?;
    let day = u8::try_from(day).map_err(|_| ValueError("not a real calendar date"))?;
    Date::from_calendar_date(year, month, day)
        .map_err(|_| ValueError("not a real calendar date"))?;
    Ok(value.to_owned())
}

/// The limits and messages of a free-text type.
struct FreeText {
    max_chars: usize,
    /// Line breaks and tabs allowed.
    multiline: bool,
    empty: ValueError,
    too_long: ValueError,
}

const NAME: FreeText = FreeText {
    max_chars: MAX_NAME_CHARS,
    multiline: false,
    empty: ValueError("a name must not be empty"),
    too_long: ValueError("a name must be at most 200 characters long"),
};

const ADDRESS: FreeText = FreeText {
    max_chars: MAX_ADDRESS_CHARS,
    multiline: true,
    empty: ValueError("an address must not be empty"),
    too_long: ValueError("an address must be at most 500 characters long"),
};

const TEXT: FreeText = FreeText {
    max_chars: MAX_TEXT_CHARS,
    multiline: true,
    empty: ValueError("a text must not be empty"),
    too_long: ValueError("a text must be at most 10000 characters long"),
};

/// Names, addresses and free text: trimmed, bounded, no control characters
/// (line breaks and tabs allowed where multiline; `\r\n` becomes `\n`).
fn free_text(raw: &str, kind: &FreeText) -> Result<String, ValueError> {
    let value = raw.trim().replace("\r\n", "\n");
    if value.is_empty() {
        return Err(kind.empty);
    }
    if value.chars().count() > kind.max_chars {
        return Err(kind.too_long);
    }
    let allowed_control = |c: char| kind.multiline && (c == '\n' || c == '\t');
    if value.chars().any(|c| c.is_control() && !allowed_control(c)) {
        return Err(ValueError("contains control characters"));
    }
    Ok(value)
}

fn national_id(raw: &str) -> Result<String, ValueError> {
    let value: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if !value
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ValueError(
            "a national id may contain only letters A-Z, digits and -",
        ));
    }
    if !NATIONAL_ID_CHARS.contains(&value.len()) {
        return Err(ValueError("a national id must be 4 to 32 characters long"));
    }
    Ok(value)
}

fn iban(raw: &str) -> Result<String, ValueError> {
    let value: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let bytes = value.as_bytes();
    let shape_ok = IBAN_CHARS.contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit);
    if !shape_ok {
        return Err(ValueError(
            "not a valid IBAN (country code, check digits, then up to 30 letters and digits)",
        ));
    }
    // ISO 13616: move the first four characters to the end, letters become
    // 10..35, and the number must be 1 modulo 97.
    let remainder = bytes[4..].iter().chain(&bytes[..4]).fold(0u32, |acc, &b| {
        let digit = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        if digit >= 10 {
            (acc * 100 + digit) % 97
        } else {
            (acc * 10 + digit) % 97
        }
    });
    if remainder == 1 {
        Ok(value)
    } else {
        Err(ValueError("not a valid IBAN (check digits do not match)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Normalises and asserts that a refusal never echoes the input.
    fn refused(ty: FieldType, raw: &str) -> ValueError {
        match normalize(ty, raw) {
            Ok(v) => panic!("{ty} accepted {raw:?} as {v:?}"),
            Err(e) => {
                let text = e.to_string();
                let trimmed = raw.trim();
                if trimmed.chars().count() >= 3 {
                    assert!(!text.contains(trimmed), "{text:?} echoes the input");
                    assert!(
                        !text.to_lowercase().contains(&trimmed.to_lowercase()),
                        "{text:?} echoes the input"
                    );
                }
                e
            }
        }
    }

    fn ok(ty: FieldType, raw: &str) -> String {
        match normalize(ty, raw) {
            Ok(v) => v,
            Err(e) => panic!("{ty} refused a valid value: {e}"),
        }
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            ok(FieldType::Email, "  Ada@Example.COM "),
            "ada@example.com"
        );
        assert_eq!(
            ok(FieldType::Email, "a.b+tag@mail.example.co.uk"),
            "a.b+tag@mail.example.co.uk"
        );
        assert_eq!(
            ok(FieldType::Email, "x@xn--bcher-kva.example"),
            "x@xn--bcher-kva.example"
        );
        for bad in [
            "",
            "   ",
            "ada",
            "ada@",
            "@example.com",
            "ada@@example.com",
            "ada@b@example.com",
            "ada@example",
            "ada@example.",
            "ada@.example.com",
            "ada@exa mple.com",
            "a da@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "ada@-example.com",
            "ada@example.123",
            "ada\u{0}@example.com",
        ] {
            refused(FieldType::Email, bad);
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(
            refused(FieldType::Email, &long_local)
                .message()
                .contains("64")
        );
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        assert!(refused(FieldType::Email, &long).message().contains("254"));
        assert_eq!(
            refused(FieldType::Email, "ada.example.com").message(),
            "an email address must contain exactly one @"
        );
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(ok(FieldType::Phone, "+39 333 123 4567"), "+393331234567");
        assert_eq!(ok(FieldType::Phone, "+1 (415) 555-0100"), "+14155550100");
        assert_eq!(ok(FieldType::Phone, "+44.20.7946.0958"), "+442079460958");
        assert_eq!(ok(FieldType::Phone, "+12345678"), "+12345678");
        assert_eq!(ok(FieldType::Phone, "+123456789012345"), "+123456789012345");
        for bad in [
            "",
            "3331234567",
            "0039 333 123 4567",
            "+0 333 123 4567",
            "+1234567",
            "+1234567890123456",
            "+39 333 ABC 4567",
            "++393331234567",
            "+39/333/1234567",
            "+",
        ] {
            let e = refused(FieldType::Phone, bad);
            assert!(e.message().starts_with("not a valid E.164 phone number"));
        }
    }

    #[test]
    fn dates_are_real_iso_dates() {
        assert_eq!(ok(FieldType::Date, "1990-12-31"), "1990-12-31");
        assert_eq!(ok(FieldType::Date, " 2024-02-29 "), "2024-02-29");
        for bad in [
            "2023-02-29",
            "1990-13-01",
            "1990-00-10",
            "1990-04-31",
            "1990-01-00",
        ] {
            assert_eq!(
                refused(FieldType::Date, bad).message(),
                "not a real calendar date"
            );
        }
        for bad in [
            "31/12/1990",
            "1990-1-5",
            "19901231",
            "1990-12-31T00:00:00",
            "+1990-12-31",
            "",
        ] {
            assert_eq!(
                refused(FieldType::Date, bad).message(),
                "a date must be written YYYY-MM-DD"
            );
        }
    }

    #[test]
    fn names_addresses_and_text_are_bounded() {
        assert_eq!(ok(FieldType::Name, "  Ada Lovelace "), "Ada Lovelace");
        assert_eq!(
            ok(FieldType::Name, "Zoë Ñúñez-O'Brien"),
            "Zoë Ñúñez-O'Brien"
        );
        assert_eq!(ok(FieldType::Name, &"é".repeat(200)).chars().count(), 200);
        refused(FieldType::Name, "");
        refused(FieldType::Name, " \t ");
        refused(FieldType::Name, &"a".repeat(201));
        assert_eq!(
            refused(FieldType::Name, "Ada\nLovelace").message(),
            "contains control characters"
        );
        refused(FieldType::Name, "Ada\u{7}Lovelace");

        assert_eq!(
            ok(FieldType::Address, "Via Roma 1\r\n00100 Roma\r\n"),
            "Via Roma 1\n00100 Roma"
        );
        refused(FieldType::Address, &"a".repeat(501));
        refused(FieldType::Address, "Via Roma\u{1b}[31m 1");
        ok(FieldType::Address, &"a".repeat(500));

        assert_eq!(
            ok(FieldType::Text, "line one\n\tline two"),
            "line one\n\tline two"
        );
        ok(FieldType::Text, &"x".repeat(10_000));
        refused(FieldType::Text, &"x".repeat(10_001));
        refused(FieldType::Text, "");
        refused(FieldType::Text, "null\u{0}byte");
    }

    #[test]
    fn national_ids_are_uppercased() {
        assert_eq!(
            ok(FieldType::NationalId, "rssmra80a01h501u"),
            "RSSMRA80A01H501U"
        );
        assert_eq!(ok(FieldType::NationalId, "AB 12 34 56 C"), "AB123456C");
        assert_eq!(ok(FieldType::NationalId, "123-45-6789"), "123-45-6789");
        refused(FieldType::NationalId, "AB1");
        refused(FieldType::NationalId, &"A".repeat(33));
        refused(FieldType::NationalId, "AB_12_34");
        refused(FieldType::NationalId, "ÄB12345");
    }

    #[test]
    fn ibans_pass_the_mod97_check() {
        assert_eq!(
            ok(FieldType::Iban, "gb82 west 1234 5698 7654 32"),
            "GB82WEST12345698765432"
        );
        assert_eq!(
            ok(FieldType::Iban, "DE89370400440532013000"),
            "DE89370400440532013000"
        );
        assert_eq!(
            ok(FieldType::Iban, "IT60X0542811101000000123456"),
            "IT60X0542811101000000123456"
        );
        let e = refused(FieldType::Iban, "GB82WEST12345698765433");
        assert_eq!(e.message(), "not a valid IBAN (check digits do not match)");
        refused(FieldType::Iban, "GB83WEST12345698765432");
        refused(FieldType::Iban, "1282WEST12345698765432");
        refused(FieldType::Iban, "GBX2WEST12345698765432");
        refused(FieldType::Iban, "GB82");
        refused(FieldType::Iban, "GB82-WEST-1234-5698-7654-32");
        refused(FieldType::Iban, &format!("GB82{}", "1".repeat(31)));
    }

    #[test]
    fn errors_never_contain_the_value() {
        let samples = [
            (FieldType::Email, "secret.person@@example.com"),
            (FieldType::Phone, "+39 secret 4567"),
            (FieldType::Date, "secret-date"),
            (FieldType::Name, "secret\u{0}name"),
            (FieldType::Address, "secret\u{0}address"),
            (FieldType::Text, "secret\u{0}text"),
            (FieldType::NationalId, "secret_id"),
            (FieldType::Iban, "GB00SECRET12345678"),
        ];
        for (ty, raw) in samples {
            let e = refused(ty, raw);
            assert!(
                !e.to_string().to_lowercase().contains("secret"),
                "{ty}: {e}"
            );
            assert!(
                !format!("{e:?}").to_lowercase().contains("secret"),
                "{ty}: {e:?}"
            );
        }
    }

    #[test]
    fn masks() {
        assert_eq!(
            apply_mask(Mask::Last4, "+393331234567").as_deref(),
            Some("•••• 4567")
        );
        assert_eq!(apply_mask(Mask::Last4, "1234").as_deref(), Some("••••"));
        assert_eq!(
            apply_mask(Mask::Last4, "ÀBCDÉ").as_deref(),
            Some("•••• BCDÉ")
        );
        assert_eq!(
            apply_mask(Mask::Email, "ada@example.com").as_deref(),
            Some("a•••@example.com")
        );
        assert_eq!(
            apply_mask(Mask::Email, "no-at-sign").as_deref(),
            Some("•••")
        );
        assert_eq!(apply_mask(Mask::Hidden, "+393331234567"), None);
    }
}
