//! Names that people type and other people read (usernames): which ones
//! are refused because they could pass for another, and the key by which
//! two names are "the same".
//!
//! Unicode lets different text look the same: a Cyrillic `а` for a Latin
//! `a`, a fullwidth `ａ`, a zero-width space that shows nothing. Without
//! care, `аdmin@fund.example`, `admin\u{200b}@fund.example` and
//! `ａdmin@fund.example` are three more accounts beside
//! `admin@fund.example`. Following Unicode's security mechanisms (UTS #39):
//!
//! * [`hazard`] says why a new name is refused: an invisible character
//!   (a default-ignorable code point: zero-width spaces and joiners, bidi
//!   controls, soft hyphens, variation selectors, Hangul fillers, tags), a
//!   compatibility form (fullwidth letters, ligatures, superscripts: not in
//!   NFKC), a character outside the General Security Profile (symbols,
//!   obsolete and technical characters), or a part of the name (between
//!   ASCII punctuation such as `@` and `.`) written in more than one
//!   script, beyond the "highly restrictive" combinations of Latin with
//!   Han, Japanese or Korean.
//! * [`comparison_key`] is the UTS #39 skeleton of the name's NFKC form
//!   in lower case: two names with one key look alike (`аdmin` and
//!   `admin`; but also `bob1` and `bobl`, which is the point).
//!
//! The key is derived each time, never stored: names recorded before
//! these rules load as they were and still take part in comparisons.

use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// Why a name someone types now could pass for another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameHazard {
    #[error("has an invisible character ({}) at position {at}", code_point(*ch))]
    Invisible { ch: char, at: usize },
    #[error(
        "has '{ch}' ({}) at position {at}, a compatibility form of a plain character: type {} instead",
        code_point(*ch),
        plain
    )]
    NotPlain { ch: char, at: usize, plain: String },
    #[error("has '{ch}' ({}) at position {at}, a character that names do not use", code_point(*ch))]
    Restricted { ch: char, at: usize },
    #[error("mixes scripts ({scripts}) in '{part}': write each part of a name in one script")]
    MixedScripts { part: String, scripts: String },
}

/// `U+200B`.
fn code_point(ch: char) -> String {
    format!("U+{:04X}", u32::from(ch))
}

/// Whether a character shows nothing: a default-ignorable code point, which
/// the UTS #39 skeleton drops.
fn invisible(ch: char) -> bool {
    !ch.is_ascii()
        && unicode_security::skeleton(ch.encode_utf8(&mut [0; 4]))
            .next()
            .is_none()
}

/// The text as messages show it: characters that show nothing or are
/// controls appear as `<U+200B>`.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_control() || invisible(ch) {
            out.push('<');
            out.push_str(&code_point(ch));
            out.push('>');
        } else {
            out.push(ch);
        }
    }
    out
}

/// Why `name` may not be given to a new account or site, if it may not.
/// ASCII letters, digits and punctuation are always fine.
pub fn hazard(name: &str) -> Option<NameHazard> {
    if name.is_ascii() {
        return None;
    }
    for (i, ch) in name.chars().enumerate() {
        let at = i + 1;
        if ch.is_ascii() {
            continue;
        }
        if invisible(ch) {
            return Some(NameHazard::Invisible { ch, at });
        }
        if !ch.identifier_allowed() {
            return Some(match ch.identifier_type() {
                Some(IdentifierType::Not_NFKC) => NameHazard::NotPlain {
                    ch,
                    at,
                    plain: shown(&name.nfkc().collect::<String>().to_lowercase()),
                },
                _ => NameHazard::Restricted { ch, at },
            });
        }
    }
    name.split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_ascii())
        .find(|part| part.detect_restriction_level() > RestrictionLevel::HighlyRestrictive)
        .map(|part| NameHazard::MixedScripts {
            part: part.to_owned(),
            scripts: scripts(part),
        })
}

/// The scripts a part of a name is written in, by name, in order of first
/// use (characters common to all scripts, such as digits, left out).
fn scripts(part: &str) -> String {
    let mut seen: Vec<Script> = Vec::new();
    for ch in part.chars() {
        let script = ch.script();
        if !matches!(script, Script::Common | Script::Inherited | Script::Unknown)
            && !seen.contains(&script)
        {
            seen.push(script);
        }
    }
    seen.iter()
        .map(|s| s.full_name())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The key two names are compared by: the UTS #39 skeleton of the name's
/// NFKC form in lower case. Equal keys mean the names can pass for each
/// other (`аdmin`, `admin\u{200b}`, `ａdmin` and `admin` share one).
pub fn comparison_key(name: &str) -> String {
    let folded = if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        name.nfkc().collect::<String>().to_lowercase()
    };
    unicode_security::skeleton(&folded).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_look_alikes_of_the_black_box_test_share_admins_key() {
        let key = comparison_key("admin@fund.example");
        for lookalike in [
            "\u{430}dmin@fund.example",
            "admin\u{200b}@fund.example",
            "\u{ff41}dmin@fund.example",
            "ADMIN@FUND.EXAMPLE",
        ] {
            assert_eq!(comparison_key(lookalike), key, "{}", shown(lookalike));
        }
        assert_ne!(comparison_key("admin2@fund.example"), key);
    }

    #[test]
    fn confusable_ascii_shares_a_key_too() {
        assert_eq!(comparison_key("bob1@x.org"), comparison_key("bobl@x.org"));
        assert_eq!(comparison_key("rn@x.org"), comparison_key("m@x.org"));
        assert_ne!(comparison_key("ann@x.org"), comparison_key("anne@x.org"));
    }

    #[test]
    fn hazards_name_the_character_and_where() {
        assert_eq!(
            hazard("admin\u{200b}@fund.example"),
            Some(NameHazard::Invisible {
                ch: '\u{200b}',
                at: 6
            })
        );
        assert_eq!(
            hazard("\u{ff41}dmin@fund.example"),
            Some(NameHazard::NotPlain {
                ch: '\u{ff41}',
                at: 1,
                plain: "admin@fund.example".into()
            })
        );
        assert_eq!(
            hazard("\u{430}dmin@fund.example"),
            Some(NameHazard::MixedScripts {
                part: "\u{430}dmin".into(),
                scripts: "Cyrillic and Latin".into()
            })
        );
        for bidi in ['\u{202e}', '\u{2066}', '\u{200f}', '\u{feff}', '\u{3164}'] {
            assert!(
                matches!(
                    hazard(&format!("a{bidi}b")),
                    Some(NameHazard::Invisible { .. })
                ),
                "{}",
                code_point(bidi)
            );
        }
        assert!(matches!(
            hazard("a\u{2211}b@x.org"),
            Some(NameHazard::Restricted { .. })
        ));
        assert_eq!(
            hazard("admin\u{200b}@x").unwrap().to_string(),
            "has an invisible character (U+200B) at position 6"
        );
    }

    #[test]
    fn plain_names_in_one_script_per_part_have_no_hazard() {
        for fine in [
            "ann@example.org",
            "o'brien+tag@example.org",
            "иван@почта.рф",
            "иван@fund.example",
            "josé.müller@example.de",
            "田中太郎@example.jp",
            "tanaka田中@example.jp",
            "δημήτρης@example.gr",
        ] {
            assert_eq!(hazard(fine), None, "{fine}");
        }
    }

    #[test]
    fn shown_marks_what_shows_nothing() {
        assert_eq!(shown("a\u{200b}b\u{0}"), "a<U+200B>b<U+0000>");
        assert_eq!(shown("plain"), "plain");
    }
}
