//! TLS on both legs of a session: warden as a TLS server to clients, and as a TLS client to
//! databases, with libpq's verification modes.
//!
//! Built on rustls with the `ring` provider. Certificates and keys are read from PEM files
//! named in the configuration; every failure names the file and what is wrong with it. The
//! module also computes the `tls-server-end-point` channel-binding data (RFC 5929) that
//! SCRAM-SHA-256-PLUS needs on each leg, and extracts the subject of a client certificate for
//! the session's identity.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{ClientTlsConfig, ClientTlsMode, Protocol, ServerTlsConfig, ServerTlsMode};

/// A TLS file or setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("server name `{0}` is not a valid DNS name or IP address")]
    ServerName(String),
}

fn file_error(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, format!("cannot read certificates: {e}")))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a valid PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_error(path, format!("cannot read a PEM private key: {e}")))
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Warden's TLS server side for one listener.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ServerConfig>,
    /// `tls-server-end-point` data of warden's certificate, when it can be computed.
    pub channel_binding: Option<Vec<u8>>,
}

/// Builds the TLS server configuration for clients, or `None` when TLS is disabled.
/// PostgreSQL listeners announce the `postgresql` ALPN protocol (for direct TLS); MySQL
/// clients negotiate TLS inside the protocol and send no ALPN, so none is configured.
pub fn client_side(
    cfg: &ClientTlsConfig,
    protocol: Protocol,
) -> Result<Option<ClientTls>, TlsError> {
    if cfg.mode == ClientTlsMode::Disable {
        return Ok(None);
    }
    let (Some(cert_path), Some(key_path)) = (&cfg.cert, &cfg.key) else {
        return Err(TlsError::Verifier(
            "client TLS needs a certificate and a key".into(),
        ));
    };
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = load_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let channel_binding = tls_server_end_point(&certs[0]);
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| file_error(key_path, format!("does not match the certificate: {e}")))?;
    if protocol == Protocol::Postgres {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    Ok(Some(ClientTls {
        config: Arc::new(config),
        channel_binding,
    }))
}

/// Warden's TLS client side towards one database.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
    pub mode: ServerTlsMode,
}

/// Builds the TLS client configuration for a database, or `None` when TLS is disabled.
pub fn server_side(cfg: &ServerTlsConfig) -> Result<Option<ServerTls>, TlsError> {
    if cfg.mode == ServerTlsMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match cfg.mode {
        ServerTlsMode::Disable => unreachable!("handled above"),
        ServerTlsMode::Prefer | ServerTlsMode::Require => Arc::new(NoVerification(provider)),
        ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull => {
            let ca = cfg
                .ca
                .as_ref()
                .ok_or_else(|| TlsError::Verifier("verification needs a CA".into()))?;
            let roots = load_roots(ca)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            if cfg.mode == ServerTlsMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| file_error(key, format!("does not match the certificate: {e}")))?,
        _ => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(cfg.server_name.clone())
        .map_err(|_| TlsError::ServerName(cfg.server_name.clone()))?;
    Ok(Some(ServerTls {
        config: Arc::new(config),
        server_name,
        mode: cfg.mode,
    }))
}

/// `require` and `prefer`: encrypt, but do not authenticate the database (as libpq does).
/// Handshake signatures are still checked, so the session key is bound to the presented key.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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

/// `verify-ca`: the chain must lead to the configured CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// RFC 5929 `tls-server-end-point`: the certificate's hash with the algorithm of its signature
/// (SHA-256 when that is MD5 or SHA-1). `None` when the algorithm has no defined hash
/// (Ed25519, for instance), in which case channel binding is not offered.
pub fn tls_server_end_point(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use ring::digest;
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let oid = parsed.signature_algorithm.algorithm.to_id_string();
    let algorithm = match oid.as_str() {
        // md5WithRSA, sha1WithRSA, sha256WithRSA, ecdsa-with-SHA1, ecdsa-with-SHA256, dsa-with-sha256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "2.16.840.1.101.3.4.3.2" => &digest::SHA256,
        // sha384WithRSA, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &digest::SHA384,
        // sha512WithRSA, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &digest::SHA512,
        // RSASSA-PSS names its hash in parameters; PostgreSQL does not support it either.
        _ => return None,
    };
    Some(digest::digest(algorithm, cert.as_ref()).as_ref().to_vec())
}

/// The subject of a client certificate, in RFC 4514 form (`CN=alice, O=Example`).
pub fn certificate_subject(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}
