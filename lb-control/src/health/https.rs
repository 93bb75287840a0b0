//! `type = "https"`: the `http` check over TLS (rustls, with ring). `sni` is sent when
//! set; without it no server name is sent (SNI never carries an address). With `verify`
//! the chain must lead to a certificate of `ca_file` and name `sni` (or, without `sni`,
//! the backend's IP address); without it any certificate is taken, but the handshake's
//! signatures are still checked, so the backend holds the key of what it presents.
//!
//! The client settings are built at each check: `ca_file` is read then, so a renewed CA is
//! picked up without a reload, and a missing or unreadable one is this host's problem
//! (counted as a local error, not against the backend).
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::{connect_failed, http, Failed};
use crate::tunnel_check::Target;
use lb_config::{HealthCheck, TlsCheck};

pub(super) async fn attempt(check: &HealthCheck, target: &Target) -> Result<String, Failed> {
    let config = client_config(&check.tls).map_err(Failed::Local)?;
    let name = server_name(&check.tls, target.address().ip())?;
    let tcp = target.connect().await.map_err(|e| connect_failed(target, e))?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| Failed::Backend(format!("TLS handshake: {e}")))?;
    let host = check.tls.sni.clone().unwrap_or_else(|| target.address().to_string());
    let detail = http::exchange(check, &host, &mut tls).await?;
    Ok(format!("TLS, {detail}"))
}

/// The name the handshake is for: `sni`, else the address (which rustls never sends).
fn server_name(tls: &TlsCheck, ip: IpAddr) -> Result<ServerName<'static>, Failed> {
    match &tls.sni {
        Some(sni) => ServerName::try_from(sni.clone()).map_err(|e| Failed::Local(format!("sni {sni:?}: {e}"))),
        None => Ok(ServerName::IpAddress(ip.into())),
    }
}

fn client_config(tls: &TlsCheck) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("local: TLS settings: {e}"))?;
    let config = match (&tls.ca_file, tls.verify) {
        (Some(path), true) => builder.with_root_certificates(roots(path)?).with_no_client_auth(),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// The certificates of a PEM file; at least one.
fn roots(path: &std::path::Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("local: ca_file {shown}: {e}"))? {
        let cert = cert.map_err(|e| format!("local: ca_file {shown}: {e}"))?;
        roots.add(cert).map_err(|e| format!("local: ca_file {shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("local: ca_file {shown} holds no certificate"));
    }
    Ok(roots)
}

/// `verify = false`: any certificate, but genuine handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
