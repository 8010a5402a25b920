//! The cluster CA: a key and self-signed certificate in the controller's
//! data dir (`ca.key` 0600, `ca.crt`), shared by controllers on the same
//! data dir like the images. It signs host certificates (at join) and each
//! controller's own certificate (at start, kept in memory only).

use crate::identity::{CONTROLLER_URI, HOST_URI_PREFIX};
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(20 * 365);
/// How long a host certificate is valid (a host joins again to renew it).
const HOST_VALIDITY: Duration = Duration::days(5 * 365);
/// How long a controller's certificate is valid (made anew at every start).
const CONTROLLER_VALIDITY: Duration = Duration::days(365);

/// The cluster CA, able to sign.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct IssuedPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    /// `dir/ca.crt` and `dir/ca.key`.
    pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("ca.crt"), dir.join("ca.key"))
    }

    /// Loads the CA from `dir`, creating it on first use. Two controllers
    /// starting together on one data dir end up with the same CA: the files
    /// are written under temporary names and linked into place, and the
    /// loser of that race loads the winner's.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let (cert_path, key_path) = Self::paths(dir);
        if !key_path.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let (cert_pem, key_pem) = new_ca()?;
            let tmp = dir.join(format!(".ca-{}", std::process::id()));
            write_private(&tmp.with_extension("key"), &key_pem)?;
            std::fs::write(tmp.with_extension("crt"), &cert_pem)?;
            // The certificate first: whoever sees the key sees its certificate.
            let cert_won = std::fs::hard_link(tmp.with_extension("crt"), &cert_path).is_ok();
            if cert_won {
                std::fs::hard_link(tmp.with_extension("key"), &key_path)
                    .with_context(|| format!("creating {}", key_path.display()))?;
            }
            let _ = std::fs::remove_file(tmp.with_extension("crt"));
            let _ = std::fs::remove_file(tmp.with_extension("key"));
            if cert_won {
                tracing::info!(path = %cert_path.display(), "created the cluster CA");
            }
        }
        Self::load(dir)
    }

    /// Loads an existing CA (waiting briefly for another process's key).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let (cert_path, key_path) = Self::paths(dir);
        let mut key = std::fs::read_to_string(&key_path);
        for _ in 0..50 {
            if key.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            key = std::fs::read_to_string(&key_path);
        }
        let key_pem = key.with_context(|| format!("reading {}", key_path.display()))?;
        let cert_pem = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let key = KeyPair::from_pem(key_pem).context("parsing the CA key")?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).context("parsing the CA certificate")?;
        let cert_der = pem_to_der(cert_pem)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate: what join tokens carry.
    pub fn fingerprint(&self) -> String {
        crate::fingerprint(&self.cert_der)
    }

    /// Signs a host certificate for the key in `csr_pem` (its proof of
    /// possession is checked; everything else in it is ignored): the host
    /// id as URI SAN, and `url_host` (an IP address or DNS name) as the only
    /// name it may be reached at.
    pub fn issue_host(
        &self,
        host_id: &str,
        url_host: &str,
        csr_pem: &str,
    ) -> anyhow::Result<String> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| anyhow::anyhow!("invalid certificate signing request: {e}"))?;
        let mut params = leaf_params(
            &format!("nubis host {host_id}"),
            HOST_VALIDITY,
            format!("{HOST_URI_PREFIX}{host_id}"),
        )?;
        params.subject_alt_names.push(name_san(url_host)?);
        csr.params = params;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }

    /// A fresh key and certificate for a controller (server of the agent
    /// protocol and client of the agents' APIs).
    pub fn issue_controller(&self) -> anyhow::Result<IssuedPair> {
        let key = KeyPair::generate()?;
        let params = leaf_params(
            "nubis controller",
            CONTROLLER_VALIDITY,
            CONTROLLER_URI.into(),
        )?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A new CA: (certificate PEM, key PEM).
fn new_ca() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "nubis cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn leaf_params(
    common_name: &str,
    validity: Duration,
    role_uri: String,
) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(role_uri.try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that differ between hosts.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| anyhow::anyhow!("random serial: {e}"))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    Ok(params)
}

/// A SAN for an IP address or DNS name.
fn name_san(name: &str) -> anyhow::Result<SanType> {
    Ok(match name.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.to_owned().try_into()?),
    })
}

/// A new key for a host and a signing request for it: (key PEM, CSR PEM).
pub fn new_host_key() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(Vec::<String>::new())?;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Checks a signing request (its form and its signature, i.e. that the
/// sender holds the key), before anything is spent on it.
pub fn check_csr(csr_pem: &str) -> anyhow::Result<()> {
    CertificateSigningRequestParams::from_pem(csr_pem)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("invalid certificate signing request: {e}"))
}

/// Writes `contents` to a new file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The DER of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let cert = rustls_pemfile::certs(&mut reader)
        .next()
        .context("no certificate in PEM")??;
    Ok(cert.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{PeerIdentity, Role};

    #[test]
    fn host_certificates_name_their_host_and_address_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let again = ClusterCa::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let (_key, csr) = new_host_key().unwrap();
        let cert = ca.issue_host("h-1", "10.0.0.7", &csr).unwrap();
        let id = PeerIdentity::from_der(&pem_to_der(&cert).unwrap()).unwrap();
        assert_eq!(id.role, Role::Host("h-1".into()));
        assert_eq!(id.names, vec!["10.0.0.7".to_owned()]);
        assert!(id.names_url_host("https://10.0.0.7:9000"));
        assert!(!id.names_url_host("https://10.0.0.8:9000"));
        let controller = ca.issue_controller().unwrap();
        let id = PeerIdentity::from_der(&pem_to_der(&controller.cert_pem).unwrap()).unwrap();
        assert_eq!(id.role, Role::Controller);
        assert!(id.host().is_none());
    }
}
