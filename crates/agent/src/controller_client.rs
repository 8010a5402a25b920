//! The agent's side of the agent protocol: calls to the controller.

use anyhow::{bail, Context};
use nubis_api::agent::{DesiredState, Host, HostReport, RegisterHost, AGENT_TOKEN_HEADER};
use nubis_api::{HostId, ImageId};
use std::time::Duration;

/// Connecting to the controller (a TCP handshake: milliseconds on a LAN).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole ordinary request (register, report): the controller answers in
/// milliseconds unless its database is slow; a stuck request is retried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The controller holds a desired-state long poll up to 25 s
/// (`LONG_POLL` in the controller's `http/agents.rs`) before answering
/// anyway; the agent waits that long plus margin for building the answer.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(25 + 20);

/// Until an image download's response headers arrive (the body then runs
/// under the image cache's idle timeout, not a total one: images are big).
pub const DOWNLOAD_START_TIMEOUT: Duration = Duration::from_secs(30);

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
                .connect_timeout(CONNECT_TIMEOUT)
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
        // Bounded on its own: a download's request has no total limit.
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        bail!("controller answered {status}: {body}")
    }

    /// Announces this host; returns its id.
    pub async fn register(&self, req: &RegisterHost) -> anyhow::Result<Host> {
        let resp = self
            .request(reqwest::Method::POST, "/hosts")
            .timeout(REQUEST_TIMEOUT)
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
            .timeout(LONG_POLL_TIMEOUT);
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
            .timeout(REQUEST_TIMEOUT)
            .json(report)
            .send()
            .await
            .context("reporting to the controller")?;
        Self::check(resp).await?;
        Ok(())
    }

    /// Starts downloading an image file, from byte `from` on (an HTTP
    /// `Range` request when `from > 0`: the answer is `206 Partial Content`
    /// if the controller resumes, or a plain `200` with the whole file).
    pub async fn image_file(&self, image: ImageId, from: u64) -> anyhow::Result<reqwest::Response> {
        let mut req = self.request(reqwest::Method::GET, &format!("/images/{image}/file"));
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let resp = tokio::time::timeout(DOWNLOAD_START_TIMEOUT, req.send())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the controller did not start sending the image within {} s",
                    DOWNLOAD_START_TIMEOUT.as_secs()
                )
            })?
            .context("downloading image")?;
        Self::check(resp).await
    }
}
