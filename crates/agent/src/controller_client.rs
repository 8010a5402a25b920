//! The agent's side of the agent protocol: calls to the controller.

use anyhow::{bail, Context};
use nubis_api::agent::{DesiredState, Host, HostReport, RegisterHost, AGENT_TOKEN_HEADER};
use nubis_api::{HostId, ImageId};
use std::time::Duration;

/// An HTTP client for the controller's `/v1/agent` endpoints.
#[derive(Clone)]
pub struct ControllerClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ControllerClient {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v1/agent{path}", self.base))
            .header(AGENT_TOKEN_HEADER, &self.token)
    }

    async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        bail!("controller answered {status}: {body}")
    }

    /// Announces this host; returns its id.
    pub async fn register(&self, req: &RegisterHost) -> anyhow::Result<Host> {
        let resp = self
            .request(reqwest::Method::POST, "/hosts")
            .timeout(Duration::from_secs(30))
            .json(req)
            .send()
            .await
            .context("registering with the controller")?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// The desired state; with `after`, waits for a change past that revision.
    pub async fn desired(&self, host: HostId, after: Option<u64>) -> anyhow::Result<DesiredState> {
        let mut req = self
            .request(reqwest::Method::GET, &format!("/hosts/{host}/desired"))
            .timeout(Duration::from_secs(60));
        if let Some(after) = after {
            req = req.query(&[("after", after)]);
        }
        let resp = req.send().await.context("fetching desired state")?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// Sends the full observed state of this host.
    pub async fn report(&self, host: HostId, report: &HostReport) -> anyhow::Result<()> {
        let resp = self
            .request(reqwest::Method::PUT, &format!("/hosts/{host}/report"))
            .timeout(Duration::from_secs(30))
            .json(report)
            .send()
            .await
            .context("reporting to the controller")?;
        Self::check(resp).await?;
        Ok(())
    }

    /// Starts downloading an image file.
    pub async fn image_file(&self, image: ImageId) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/images/{image}/file"))
            .send()
            .await
            .context("downloading image")?;
        Self::check(resp).await
    }
}
