//! TLS client configurations for the Rust clients (tokio-postgres and raw protocol sessions).
//!
//! The mapping to libpq's `sslmode` is explicit: [`ServerCheck::None`] is `require` (encrypted,
//! server not authenticated), [`ServerCheck::VerifyFull`] is `verify-full` (chain to the given CA
//! and the host name or IP in the certificate). rustls runs with the `ring` provider, like the
//! rest of the workspace.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::pki::CertFiles;

/// How a client checks the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCheck {
    /// Accept any certificate (the handshake's signatures are still checked): libpq's `require`.
    None,
    /// The chain must lead to `ca` and the certificate must name the host: libpq's `verify-full`.
    VerifyFull { ca: PathBuf },
}

/// The crypto provider every harness TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration: server check and an optional client certificate (mTLS).
pub fn client_config(
    check: &ServerCheck,
    client_cert: Option<&CertFiles>,
) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls refuses the default protocol versions")?;
    let builder = match check {
        ServerCheck::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider))),
        ServerCheck::VerifyFull { ca } => builder.with_root_certificates(root_store(ca)?),
    };
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = load_certs(&files.cert)?;
            let key = PrivateKeyDer::from_pem_file(&files.key)
                .with_context(|| format!("cannot read the private key {}", files.key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("rustls refuses the client certificate")?
        }
    };
    Ok(Arc::new(config))
}

/// The certificates in the PEM file at `path`.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// A root store holding the certificates in the PEM file `ca`.
pub fn root_store(ca: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .with_context(|| format!("rustls refuses the CA certificate in {}", ca.display()))?;
    }
    Ok(roots)
}

/// The server name rustls verifies for `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string()).with_context(|| format!("bad TLS server name {host}"))
}

/// libpq's `sslmode=require`: no authentication of the server, signatures still checked.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
