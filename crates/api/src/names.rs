//! Resource names, validated once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest name accepted: a DNS label, so a server name can become a host name.
pub const MAX_NAME_LEN: usize = 63;

/// A user-chosen name: 1 to 63 characters, no `/`, no `..`, no control characters,
/// no leading or trailing white space.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, min_length = 1, max_length = 63)]
pub struct Name(String);

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

    #[test]
    fn json_deserialization_validates() {
        assert!(serde_json::from_str::<Name>("\"ok\"").is_ok());
        let err = serde_json::from_str::<Name>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
    }
}
