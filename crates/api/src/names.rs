//! Resource names, validated once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest name accepted: a DNS label, so a server name can become a host name.
pub const MAX_NAME_LEN: usize = 63;

/// A user-chosen name: 1 to 63 characters, no `/`, no `..`, no control characters,
/// no leading or trailing white space.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

/// Characters `str::trim` removes that are not control characters (those
/// are refused everywhere): what a name may not start or end with.
const EDGE_SPACE: &str = r"\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// The regular expression (ECMA-262, as OpenAPI uses) of a valid name,
/// length aside (`minLength`/`maxLength` say that): no `/`, no control
/// character, no `..`, and no white space at either end.
pub fn name_pattern() -> String {
    // Any character but `/`, `.` and controls (Unicode Cc, as char::is_control).
    let c = r"[^/.\u0000-\u001f\u007f-\u009f]";
    // The same without edge white space.
    let e = format!(r"[^/.\u0000-\u001f\u007f-\u009f{EDGE_SPACE}]");
    // Runs of such characters joined by single dots, so never `..`; the
    // first and last characters are edge characters unless they are dots.
    let alternatives = [
        // A lone dot.
        r"\.".to_owned(),
        // Dots at both ends.
        format!(r"\.{c}(?:\.?{c})*\."),
        // A leading dot only.
        format!(r"\.(?:{c}(?:\.?{c})*\.?)?{e}"),
        // A trailing dot only.
        format!(r"{e}(?:\.?{c})*\."),
        // No dot at either end.
        format!(r"{e}(?:(?:\.?{c})*\.?{e})?"),
    ];
    format!("^(?:{})$", alternatives.join("|"))
}

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            Some(&name_pattern()),
            1,
            Some(MAX_NAME_LEN),
            "1 to 63 characters: no '/', no '..', no control characters, \
             no white space at either end",
        )
        .into()
    }
}

impl utoipa::ToSchema for Name {}

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("name must be at most {MAX_NAME_LEN} characters long")]
    TooLong,
    #[error("name must not contain '/'")]
    Slash,
    #[error("name must not contain '..'")]
    DotDot,
    #[error("name must not contain control characters")]
    Control,
    #[error("name must not start or end with white space")]
    Whitespace,
}

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.chars().count() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if s.contains('/') {
            return Err(NameError::Slash);
        }
        if s.contains("..") {
            return Err(NameError::DotDot);
        }
        if s.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if s.trim() != s {
            return Err(NameError::Whitespace);
        }
        Ok(Self(s))
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::try_from(s.to_owned())
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["web-1", "a", "Ünïcode ok", &"x".repeat(63)] {
            assert!(ok.parse::<Name>().is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        let cases = [
            ("", NameError::Empty),
            (&"x".repeat(64), NameError::TooLong),
            ("a/b", NameError::Slash),
            ("..", NameError::DotDot),
            ("a\nb", NameError::Control),
            ("a\u{7f}", NameError::Control),
            (" a", NameError::Whitespace),
        ];
        for (bad, why) in cases {
            assert_eq!(bad.parse::<Name>().unwrap_err(), why, "{bad:?}");
        }
    }

    /// The OpenAPI pattern (with the length limits) accepts exactly the
    /// names the parser accepts, over random strings of tricky characters.
    #[test]
    fn the_schema_pattern_agrees_with_the_parser() {
        let re = regex::Regex::new(&name_pattern()).unwrap();
        let alphabet = [
            'a', 'Z', '0', '-', '_', ' ', '.', '/', '\n', '\t', '\u{0}', '\u{7f}', '\u{85}',
            '\u{9f}', '\u{a0}', '\u{1680}', '\u{2003}', '\u{2028}', '\u{3000}', '\u{feff}', 'é',
            '雲', '🦀',
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..50_000 {
            let len = (next() % 8) as usize;
            let mut s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if next() % 50 == 0 {
                s = "x".repeat(60 + (next() % 6) as usize);
            }
            let by_schema = re.is_match(&s) && (1..=MAX_NAME_LEN).contains(&s.chars().count());
            let by_parser = s.parse::<Name>().is_ok();
            assert_eq!(by_schema, by_parser, "{s:?}");
            if by_parser {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        // Both sides were exercised.
        assert!(
            valid > 1000 && invalid > 1000,
            "{valid} valid, {invalid} invalid"
        );
    }

    #[test]
    fn json_deserialization_validates() {
        assert!(serde_json::from_str::<Name>("\"ok\"").is_ok());
        let err = serde_json::from_str::<Name>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
    }
}
