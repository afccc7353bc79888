//! Listener TLS and mutual TLS with rustls (SPEC §3 `tls`): certificate chain + key, and with
//! `clientCAFile` a client-certificate verifier that refuses handshakes without a certificate from that CA.
//!
//! Built once at startup; a bad file is a configuration error naming its key.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, TlsConfig};

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Build the rustls server config for the public listener.
pub fn server_config(tls: &TlsConfig) -> Result<ServerConfig, ConfigError> {
    // ring is the provider the whole binary uses (kube's TLS too): it builds without cmake/nasm. Its
    // deprecation only notes the missing post-quantum key exchange, which registries do not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|e| key_error("tls.certFile", format!("{}: {e}", tls.cert_file.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| key_error("tls.certFile", format!("{}: {e}", tls.cert_file.display())))?;
    if certs.is_empty() {
        return Err(key_error("tls.certFile", "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| key_error("tls.keyFile", format!("{}: {e}", tls.key_file.display())))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| key_error("tls", e.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(path)
                .map_err(|e| key_error("tls.clientCAFile", format!("{}: {e}", path.display())))?;
            for ca in cas {
                let ca = ca.map_err(|e| {
                    key_error("tls.clientCAFile", format!("{}: {e}", path.display()))
                })?;
                roots
                    .add(ca)
                    .map_err(|e| key_error("tls.clientCAFile", e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| key_error("tls.clientCAFile", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        key_error(
            "tls.keyFile",
            format!("does not match the certificate: {e}"),
        )
    })
}
