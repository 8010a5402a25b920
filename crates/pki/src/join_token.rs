//! Join tokens: `nubis-join.<secret>.<CA SHA-256>`. The secret (256 bits)
//! is what the controller checks (it keeps only its SHA-256, and accepts it
//! once, before it expires); the CA's fingerprint lets the agent check, on
//! its first contact, that it talks to this cluster's controller (like
//! kubeadm's discovery token CA cert hash).

use std::fmt;

const PREFIX: &str = "nubis-join";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    secret: String,
    ca_fingerprint: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// A new random token for the CA with this fingerprint.
    pub fn generate(ca_fingerprint: &str) -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random token: {e}"))?;
        Ok(Self {
            secret: hex::encode(bytes),
            ca_fingerprint: ca_fingerprint.to_owned(),
        })
    }

    /// Parses the text form; the error says what is wrong (never the secret).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let mut parts = text.trim().split('.');
        let (Some(PREFIX), Some(secret), Some(ca), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a join token looks like nubis-join.<secret>.<CA fingerprint>");
        };
        let is_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex(secret) || !is_hex(ca) {
            return Err("a join token's secret and CA fingerprint are 64 hex digits each");
        }
        Ok(Self {
            secret: secret.to_ascii_lowercase(),
            ca_fingerprint: ca.to_ascii_lowercase(),
        })
    }

    /// The secret's SHA-256 (hex): what the controller stores and looks up.
    pub fn secret_hash(&self) -> String {
        crate::fingerprint(self.secret.as_bytes())
    }

    /// The SHA-256 of the cluster CA's certificate the agent must see.
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// The secret alone, as sent to the controller at join.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The hash of a secret as the agent sent it.
    pub fn hash_of_secret(secret: &str) -> String {
        crate::fingerprint(secret.trim().to_ascii_lowercase().as_bytes())
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}.{}.{}", self.secret, self.ca_fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_shapes() {
        let token = JoinToken::generate(&"ab".repeat(32)).unwrap();
        let parsed = JoinToken::parse(&token.to_string()).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(
            parsed.secret_hash(),
            JoinToken::hash_of_secret(token.secret())
        );
        assert!(!format!("{token:?}").contains(token.secret()));
        for bad in [
            "",
            "nubis-join",
            "nubis-join.x.y",
            "other.a.b",
            &format!("{token}.x"),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
    }
}
