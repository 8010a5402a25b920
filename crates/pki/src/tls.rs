//! rustls configurations for the cluster: servers that ask for (or demand)
//! a client certificate of the cluster CA, and clients that accept a server
//! only if its certificate comes from the CA and names the role expected
//! (the controller, or one given host).
//!
//! Agents reach controllers at whatever address `--controller-url` names,
//! which the controller cannot know in advance, so an agent checks the
//! controller's role and not its DNS name or address: only the cluster CA
//! issues it, and a host certificate never carries the controller role. The
//! controller reaches an agent at the URL recorded for its host, and checks
//! both that the certificate names that URL's host and that it is that
//! host's.

use crate::identity::{PeerIdentity, Role};
use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::sync::Arc;

/// The crypto provider of every configuration (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM text (a chain: leaf first).
pub fn certs_from_pem(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let certs = rustls_pemfile::certs(&mut reader).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in PEM");
    Ok(certs)
}

/// The private key in a PEM text.
pub fn key_from_pem(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    rustls_pemfile::private_key(&mut reader)?.context("no private key in PEM")
}

fn roots(ca_der: &[u8]) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    Ok(Arc::new(roots))
}

/// Whether a server must show a client certificate of the CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Handshakes without one fail (the agents' API).
    Required,
    /// Without one the request goes on unauthenticated (the controller's
    /// agent protocol: only the join call works without).
    Optional,
}

/// A server presenting `chain_pem` (leaf, then the CA) that checks client
/// certificates against the CA.
pub fn cluster_server_config(
    ca_der: &[u8],
    chain_pem: &str,
    key_pem: &str,
    auth: ClientAuth,
) -> anyhow::Result<Arc<ServerConfig>> {
    let builder = WebPkiClientVerifier::builder_with_provider(roots(ca_der)?, provider());
    let verifier = match auth {
        ClientAuth::Required => builder.build()?,
        ClientAuth::Optional => builder.allow_unauthenticated().build()?,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs_from_pem(chain_pem)?, key_from_pem(key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A plain HTTPS server (the public API and portal) with the operator's
/// certificate chain and key; no client certificates.
pub fn public_server_config(chain_pem: &str, key_pem: &str) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs_from_pem(chain_pem)?, key_from_pem(key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Which CA a client trusts.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The CA certificate (DER) is known.
    Ca(Vec<u8>),
    /// Only the CA's SHA-256 is known (an agent joining): the server must
    /// send the CA in its chain, and it must have that fingerprint.
    Pinned(String),
}

/// A client that accepts only a server whose certificate the CA issued for
/// `expect`; it shows `identity` (chain PEM, key PEM) when given.
pub fn cluster_client_config(
    trust: Trust,
    expect: Role,
    identity: Option<(&str, &str)>,
) -> anyhow::Result<ClientConfig> {
    let verifier = Arc::new(RoleVerifier {
        trust,
        expect,
        provider: provider(),
    });
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => {
            builder.with_client_auth_cert(certs_from_pem(chain)?, key_from_pem(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client over `config` (no other roots, no system store).
pub fn reqwest_client(
    config: ClientConfig,
    builder: reqwest::ClientBuilder,
) -> anyhow::Result<reqwest::Client> {
    Ok(builder.tls_backend_preconfigured(config).build()?)
}

/// A reqwest client trusting only `ca_pem` (e.g. an operator's own CA or a
/// self-signed API certificate), checking names as usual.
pub fn client_trusting(
    ca_pem: &str,
    builder: reqwest::ClientBuilder,
) -> anyhow::Result<reqwest::Client> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest_client(config, builder)
}

/// Checks a server's certificate: issued by the CA (the chain, validity,
/// key usage), for the expected role; for a host also for the name the
/// client connected to.
#[derive(Debug)]
struct RoleVerifier {
    trust: Trust,
    expect: Role,
    provider: Arc<CryptoProvider>,
}

fn refused(why: &str) -> rustls::Error {
    tracing::warn!(why, "refused a server certificate");
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca_der = match &self.trust {
            Trust::Ca(der) => der.clone(),
            Trust::Pinned(fingerprint) => intermediates
                .iter()
                .find(|c| crate::fingerprint(c) == *fingerprint)
                .map(|c| c.to_vec())
                .ok_or_else(|| refused("the server's CA is not the one the join token names"))?,
        };
        let roots = roots(&ca_der).map_err(|_| refused("unusable CA certificate"))?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let identity =
            PeerIdentity::from_der(end_entity).ok_or_else(|| refused("no role in certificate"))?;
        if identity.role != self.expect {
            return Err(refused(
                "the server's certificate is for another role or host",
            ));
        }
        if matches!(self.expect, Role::Host(_)) {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
