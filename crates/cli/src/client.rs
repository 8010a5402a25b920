//! The HTTP client behind every CLI command: the API URL, the saved token,
//! and errors turned into readable messages.

use anyhow::{anyhow, bail, Context};
use nubis_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;

/// Talks to one Nubis API as the logged-in user.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
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
    /// A client for `base`, using `NUBIS_TOKEN` or the saved token.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let token = std::env::var("NUBIS_TOKEN")
            .ok()
            .or_else(|| std::fs::read_to_string(token_file()).ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::builder().build()?,
        })
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
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) if status == reqwest::StatusCode::UNAUTHORIZED => {
                bail!("{} (log in with 'nubis login NAME')", body.error.message)
            }
            Ok(body) => Err(anyhow!("{}", body.error.message)),
            Err(_) => bail!("the API answered {status}: {text}"),
        }
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
    use super::segment;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("lan-1_a.b~"), "lan-1_a.b~");
        assert_eq!(segment("my net"), "my%20net");
        assert_eq!(segment("a?b#c%"), "a%3Fb%23c%25");
        assert_eq!(segment("ü"), "%C3%BC");
    }
}
