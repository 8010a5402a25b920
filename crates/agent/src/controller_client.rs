//! The agent's side of the agent protocol: calls to the controller.
//!
//! Several controllers may serve one cloud (on one PostgreSQL database):
//! the client takes a list of their URLs and sends each call to the one
//! that answered last. When it does not answer (connection refused, reset,
//! or timed out), the call goes to the next, round the list, so the agent
//! also comes back to a controller that returns. An answer with an error
//! status is an answer: it is not retried elsewhere.
//!
//! Every call is mutual TLS: the agent shows its host certificate and
//! accepts only a controller's certificate from the cluster CA (see
//! `nubis_pki::tls`). The join, made once before the agent has a
//! certificate, accepts only a controller whose CA has the fingerprint the
//! join token names.

use anyhow::{bail, Context};
use nubis_api::agent::{DesiredState, Host, HostReport, RegisterHost};
use nubis_api::join::{JoinRequest, JoinResponse};
use nubis_api::{HostId, ImageId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connecting to the controller (a TCP handshake: milliseconds on a LAN).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole ordinary request (register, report): the controller answers in
/// milliseconds unless its database is slow; a stuck request is retried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A controller holds a desired-state long poll up to its `--long-poll`
/// (25 s by default, at most 50 s) before answering anyway; the agent waits
/// that long plus margin for building the answer.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(50 + 10);

/// Until an image download's response headers arrive (the body then runs
/// under the image cache's idle timeout, not a total one: images are big).
pub const DOWNLOAD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The request that joins `host` to the cluster with `token`'s secret, and
/// the new key its CSR is for (the caller keeps it: it is never sent; see
/// `nubis_pki::HostCredentials::from_join` for the answer).
pub fn join_request(
    token: &nubis_pki::JoinToken,
    host: RegisterHost,
) -> anyhow::Result<(String, JoinRequest)> {
    let (key_pem, csr_pem) = nubis_pki::ca::new_host_key()?;
    let request = JoinRequest {
        secret: token.secret().to_owned(),
        csr_pem,
        host,
    };
    Ok((key_pem, request))
}

/// An HTTP client for the controllers' `/v1/agent` endpoints.
#[derive(Clone)]
pub struct ControllerClient {
    /// Base URLs of the controllers, without a trailing slash.
    bases: Arc<Vec<String>>,
    /// Index in `bases` of the controller that answered last.
    current: Arc<AtomicUsize>,
    http: reqwest::Client,
}

/// The controller URLs in `list`: comma-separated, blanks ignored.
pub fn parse_controller_urls(list: &str) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    for url in &urls {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("controller URL {url}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("controller URL {url}: must be http(s)");
        }
    }
    if urls.is_empty() {
        bail!("no controller URL given");
    }
    Ok(urls)
}

impl ControllerClient {
    /// A client of the controllers in `bases`: one URL, or several separated
    /// by commas (tried in this order), with this host's credentials.
    pub fn new(bases: &str, credentials: &nubis_pki::HostCredentials) -> anyhow::Result<Self> {
        let http = credentials
            .controller_client(reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT))?;
        Self::with_http(bases, http)
    }

    /// A client over `http` (which decides what TLS is used).
    pub fn with_http(bases: &str, http: reqwest::Client) -> anyhow::Result<Self> {
        Ok(Self {
            bases: Arc::new(parse_controller_urls(bases)?),
            current: Arc::new(AtomicUsize::new(0)),
            http,
        })
    }

    /// A client for joining: no certificate of its own yet; it accepts a
    /// controller only if its CA has the fingerprint `token` names.
    pub fn for_join(bases: &str, token: &nubis_pki::JoinToken) -> anyhow::Result<Self> {
        let config = nubis_pki::tls::cluster_client_config(
            nubis_pki::tls::Trust::Pinned(token.ca_fingerprint().to_owned()),
            nubis_pki::Role::Controller,
            None,
        )?;
        let http = nubis_pki::tls::reqwest_client(
            config,
            reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT),
        )?;
        Self::with_http(bases, http)
    }

    fn request_to(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{base}/v1/agent{path}"))
    }

    /// Sends the request `build` makes for a controller's base URL, to the
    /// current controller and, while one does not answer, to the next ones.
    async fn send(
        &self,
        build: impl Fn(&Self, &str) -> reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let n = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last_error = None;
        for step in 0..n {
            let i = (first + step) % n;
            let base = &self.bases[i];
            match build(self, base).send().await {
                Ok(resp) => {
                    if i != first {
                        tracing::info!(controller = %base, "failed over to this controller");
                    }
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) if n > 1 && unanswered(&e) => {
                    tracing::warn!(controller = %base, error = %e, "controller does not answer; trying the next");
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one controller was tried"))
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

    /// Joins the cluster (see `for_join`): registers the host and gets its
    /// certificate for the key in the request. `Err` when no controller
    /// answered; `Ok(Err(why))` when one refused (trying again will not help).
    pub async fn join(&self, req: &JoinRequest) -> anyhow::Result<Result<JoinResponse, String>> {
        let resp = self
            .send(|c, base| {
                c.request_to(base, reqwest::Method::POST, "/join")
                    .timeout(REQUEST_TIMEOUT)
                    .json(req)
            })
            .await
            .context("joining the cluster")?;
        if resp.status().is_client_error() {
            return Ok(Err(Self::check(resp)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()));
        }
        Ok(Ok(Self::check(resp).await?.json().await?))
    }

    /// Announces this host; returns its id.
    pub async fn register(&self, req: &RegisterHost) -> anyhow::Result<Host> {
        let resp = self
            .send(|c, base| {
                c.request_to(base, reqwest::Method::POST, "/hosts")
                    .timeout(REQUEST_TIMEOUT)
                    .json(req)
            })
            .await
            .context("registering with the controller")?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// The desired state; with `after`, waits for a change past that revision.
    pub async fn desired(&self, host: HostId, after: Option<u64>) -> anyhow::Result<DesiredState> {
        let path = format!("/hosts/{host}/desired");
        let resp = self
            .send(|c, base| {
                let req = c
                    .request_to(base, reqwest::Method::GET, &path)
                    .timeout(LONG_POLL_TIMEOUT);
                match after {
                    Some(after) => req.query(&[("after", after)]),
                    None => req,
                }
            })
            .await
            .context("fetching desired state")?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// Sends the full observed state of this host.
    pub async fn report(&self, host: HostId, report: &HostReport) -> anyhow::Result<()> {
        let path = format!("/hosts/{host}/report");
        let resp = self
            .send(|c, base| {
                c.request_to(base, reqwest::Method::PUT, &path)
                    .timeout(REQUEST_TIMEOUT)
                    .json(report)
            })
            .await
            .context("reporting to the controller")?;
        Self::check(resp).await?;
        Ok(())
    }

    /// Ids of every image with a file in the catalog (`GET
    /// /v1/agent/images`): a cached image missing from it was deleted.
    pub async fn image_catalog(&self) -> anyhow::Result<Vec<ImageId>> {
        let resp = self
            .send(|c, base| c.request_to(base, reqwest::Method::GET, "/images"))
            .await
            .context("fetching the image catalog")?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// Starts downloading an image file, from byte `from` on (an HTTP
    /// `Range` request when `from > 0`: the answer is `206 Partial Content`
    /// if the controller resumes, or a plain `200` with the whole file).
    pub async fn image_file(&self, image: ImageId, from: u64) -> anyhow::Result<reqwest::Response> {
        let path = format!("/images/{image}/file");
        let request = self.send(|c, base| {
            let req = c.request_to(base, reqwest::Method::GET, &path);
            if from > 0 {
                req.header(reqwest::header::RANGE, format!("bytes={from}-"))
            } else {
                req
            }
        });
        let resp = tokio::time::timeout(DOWNLOAD_START_TIMEOUT, request)
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

/// Whether a request failed because the controller did not answer (as
/// opposed to answering badly): worth trying another controller.
fn unanswered(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_comma_separated() {
        assert_eq!(
            parse_controller_urls("http://a:1/, http://b:2").unwrap(),
            vec!["http://a:1", "http://b:2"]
        );
        assert!(parse_controller_urls(" , ").is_err());
        assert!(parse_controller_urls("ftp://a").is_err());
    }

    /// A controller that refuses connections is skipped, a later call starts
    /// at the one that answered, and the client comes back to the first
    /// when the second stops answering.
    #[tokio::test]
    async fn fails_over_to_the_next_controller_and_back() {
        let answering = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = format!("http://{}", answering.local_addr().unwrap());
        // A port nobody listens on: bound, then closed.
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let app =
            axum::Router::new().route("/v1/agent/hosts", axum::routing::post(|| async { "{}" }));
        let server = tokio::spawn(async move { axum::serve(answering, app).await });
        let client =
            ControllerClient::with_http(&format!("{down},{up}"), reqwest::Client::new()).unwrap();
        let call = |c: ControllerClient| async move {
            c.send(|c, base| c.request_to(base, reqwest::Method::POST, "/hosts"))
                .await
                .map(|r| r.url().to_string())
        };
        let url = call(client.clone()).await.unwrap();
        assert!(url.starts_with(&up), "{url}");
        assert_eq!(client.current.load(Ordering::Relaxed), 1);
        // Both down now: the error is the last one's, a connect error.
        server.abort();
        let _ = server.await;
        let e = call(client.clone()).await.unwrap_err();
        assert!(e.is_connect(), "{e}");
        // Only the first back: the client goes round to it.
        let back = tokio::net::TcpListener::bind(down.trim_start_matches("http://"))
            .await
            .unwrap();
        let app =
            axum::Router::new().route("/v1/agent/hosts", axum::routing::post(|| async { "{}" }));
        tokio::spawn(async move { axum::serve(back, app).await });
        let url = call(client.clone()).await.unwrap();
        assert!(url.starts_with(&down), "{url}");
        assert_eq!(client.current.load(Ordering::Relaxed), 0);
    }
}
