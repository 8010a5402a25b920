//! The HTTP client behind every CLI command: the API URL, the saved token,
//! and errors turned into readable messages.

use anyhow::{bail, Context};
use nubis_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;

/// Talks to one Nubis API as the logged-in user.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    /// Requests that need no login (register, login): a 401 is the API's
    /// answer to the credentials, not a missing login.
    anonymous: bool,
    http: reqwest::Client,
}

/// The one hint for every "log in first" error.
pub const LOGIN_HINT: &str = "log in with 'nubis login NAME'";

/// An error answer of the API, kept typed so a command can tell a 401 or a
/// 404 from other failures.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: reqwest::StatusCode,
    pub code: String,
    /// The readable message, with at most one login hint.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// The HTTP status of an [`ApiFailure`] behind `e`, if it is one.
pub fn failure_status(e: &anyhow::Error) -> Option<reqwest::StatusCode> {
    e.downcast_ref::<ApiFailure>().map(|f| f.status)
}

/// The message for a 401: what went wrong with the login, and the hint once.
fn unauthorized_message(logged_in: bool, anonymous: bool, api_message: &str) -> String {
    if anonymous {
        // e.g. "wrong user name or password": the credentials were refused.
        api_message.to_owned()
    } else if logged_in {
        format!("your saved login is invalid or has expired: {LOGIN_HINT}")
    } else {
        format!("you are not logged in: {LOGIN_HINT}")
    }
}

/// Where the CLI keeps the token of the last login.
pub fn token_file() -> PathBuf {
    if let Some(dir) = std::env::var_os("NUBIS_CONFIG_DIR") {
        return PathBuf::from(dir).join("token");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".config").join("nubis").join("token")
}

/// Percent-encodes one path segment, so a name such as `my net` or `a?b`
/// reaches the API intact.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ApiClient {
    /// A client for `base`, using `NUBIS_TOKEN` or the saved token; with
    /// `ca_cert`, an `https://` API must have a certificate from that CA.
    pub fn new(base: &str, ca_cert: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder();
        if let Some(path) = ca_cert {
            use anyhow::Context;
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            http = http.tls_certs_only(
                reqwest::Certificate::from_pem_bundle(&pem)
                    .with_context(|| format!("--ca-cert {}", path.display()))?,
            );
        }
        let token = std::env::var("NUBIS_TOKEN")
            .ok()
            .or_else(|| std::fs::read_to_string(token_file()).ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            anonymous: false,
            // The audit trail shows which client made a call.
            http: http
                .user_agent(concat!("nubis-cli/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }

    /// A client for `base` logged in with `token` (not the saved one): for
    /// tests and programs that drive the commands with their own login.
    pub fn with_token(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: Some(token.to_owned()),
            anonymous: false,
            http: reqwest::Client::builder()
                .user_agent(concat!("nubis-cli/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }

    /// The same API without the saved login, for register and login.
    pub fn anonymous(&self) -> Self {
        Self {
            base: self.base.clone(),
            token: None,
            anonymous: true,
            http: self.http.clone(),
        }
    }

    /// Whether a token (saved or from `NUBIS_TOKEN`) is at hand.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request; a non-2xx answer becomes an error with the API's message.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the Nubis API at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let Ok(body) = serde_json::from_str::<ErrorBody>(&text) else {
            bail!("the API answered {status}: {text}");
        };
        let message = if status == reqwest::StatusCode::UNAUTHORIZED {
            unauthorized_message(self.token.is_some(), self.anonymous, &body.error.message)
        } else {
            body.error.message
        };
        Err(ApiFailure {
            status,
            code: body.error.code,
            message,
        }
        .into())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        Ok(resp.json().await?)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let resp = self
            .send(self.request(reqwest::Method::POST, path).json(body))
            .await?;
        Ok(resp.json().await?)
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let resp = self
            .send(self.request(reqwest::Method::PUT, path).json(body))
            .await?;
        Ok(resp.json().await?)
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let resp = self
            .send(self.request(reqwest::Method::PATCH, path).json(body))
            .await?;
        Ok(resp.json().await?)
    }

    /// POST without a body, for actions such as `/start`.
    pub async fn action<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.send(self.request(reqwest::Method::POST, path)).await?;
        Ok(resp.json().await?)
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.request(reqwest::Method::DELETE, path))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{segment, unauthorized_message, LOGIN_HINT};

    #[test]
    fn a_401_gets_one_hint_or_none() {
        let refused = unauthorized_message(false, true, "wrong user name or password");
        assert_eq!(refused, "wrong user name or password");
        for (logged_in, what) in [(false, "not logged in"), (true, "expired")] {
            let m = unauthorized_message(logged_in, false, "missing 'Authorization' header");
            assert!(m.contains(what), "{m}");
            assert_eq!(m.matches("nubis login").count(), 1, "{m}");
            assert!(
                m.ends_with(LOGIN_HINT) && !m.contains("Authorization"),
                "{m}"
            );
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("lan-1_a.b~"), "lan-1_a.b~");
        assert_eq!(segment("my net"), "my%20net");
        assert_eq!(segment("a?b#c%"), "a%3Fb%23c%25");
        assert_eq!(segment("ü"), "%C3%BC");
    }
}
