//! Test certificate authorities and certificates, generated at run time.
//!
//! Tests need several independent trust domains: the database's (warden verifies it upstream),
//! warden's own listener (clients verify it), a CA for client certificates (mTLS) and a stranger
//! CA whose certificates everyone must refuse. Keys are ECDSA P-256 signed with SHA-256, which
//! both OpenSSL (PostgreSQL, libpq) and rustls accept and which gives tls-server-end-point
//! channel binding a SHA-256 hash.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority that exists only for the duration of a test process.
pub struct TestCa {
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("name", &self.name).finish()
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The subject's common name.
    pub common_name: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where a certificate and its key were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Warden tests");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("cannot generate a CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .with_context(|| format!("cannot self-sign the test CA {common_name}"))?;
        Ok(TestCa {
            name: common_name.to_string(),
            issuer,
        })
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, self.cert_pem())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path.to_path_buf())
    }

    /// A server certificate for `names` (DNS names or IP addresses); the first is the CN.
    pub fn issue_server(&self, names: &[&str]) -> Result<IssuedCert> {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params =
            CertificateParams::new(sans).with_context(|| format!("bad server names {names:?}"))?;
        let common_name = names.first().copied().unwrap_or("server").to_string();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, common_name)
    }

    /// A client certificate whose subject is `CN=<common_name>, O=Warden tests`.
    pub fn issue_client(&self, common_name: &str) -> Result<IssuedCert> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Warden tests");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, common_name.to_string())
    }

    fn issue(&self, params: CertificateParams, common_name: String) -> Result<IssuedCert> {
        let key = KeyPair::generate().context("cannot generate a key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("the test CA {} cannot sign {common_name}", self.name))?;
        Ok(IssuedCert {
            common_name,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl IssuedCert {
    /// Writes `<stem>.crt` and `<stem>.key` (mode 0600, as libpq and PostgreSQL demand) in `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<CertFiles> {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem)
            .with_context(|| format!("cannot write {}", cert.display()))?;
        std::fs::write(&key, &self.key_pem)
            .with_context(|| format!("cannot write {}", key.display()))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        Ok(CertFiles { cert, key })
    }
}
