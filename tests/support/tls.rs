//! A throw-away test PKI made with rcgen: one CA per test, server certificates for loopback, client
//! certificates. Nothing here is meant to be secure; it must never read certificates from outside the test's
//! own temporary directories.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// File name of the CA inside a cert dir; skopeo and containers/image read `*.crt` there as roots.
pub const CA_FILE_NAME: &str = "ca.crt";

/// A certificate authority that can issue further certificates.
pub struct CaBundle {
    /// The CA certificate, PEM.
    pub pem: String,
    cert: Certificate,
    key: KeyPair,
}

/// The CA of a test, written to disk: `dir` holds only `ca.crt`, so it is usable as a skopeo `--cert-dir`
/// (a `*.key` there would be taken for a client key).
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// Directory holding only `ca.crt`.
    pub dir: PathBuf,
    /// The issuing CA.
    pub ca: CaBundle,
}

impl TestPki {
    /// Make a new CA and write `ca.crt` into `dir` (created if missing).
    pub fn create(dir: &Path) -> TestPki {
        let ca = make_ca();
        fs::create_dir_all(dir).expect("create cert dir");
        fs::write(dir.join(CA_FILE_NAME), &ca.pem).expect("write ca.crt");
        TestPki {
            ca_pem: ca.pem.clone(),
            dir: dir.to_path_buf(),
            ca,
        }
    }

    /// Path of `ca.crt`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(CA_FILE_NAME)
    }
}

fn validity(params: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(7);
}

/// A fresh self-signed CA (ECDSA P-256).
pub fn make_ca() -> CaBundle {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params
        .distinguished_name
        .push(DnType::CommonName, "imagestream-ingest test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    let cert = params.self_signed(&key).expect("self-sign ca");
    CaBundle {
        pem: cert.pem(),
        cert,
        key,
    }
}

fn issue(
    ca: &CaBundle,
    sans: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

/// A server certificate for `sans` (IP addresses become IP SANs), signed by `ca`. Returns (cert PEM, key PEM).
pub fn issue_server_cert(ca: &CaBundle, sans: &[&str]) -> (String, String) {
    let cn = sans.first().copied().unwrap_or("server");
    issue(ca, sans, cn, ExtendedKeyUsagePurpose::ServerAuth)
}

/// A client certificate with common name `cn`, signed by `ca`. Returns (cert PEM, key PEM).
pub fn issue_client_cert(ca: &CaBundle, cn: &str) -> (String, String) {
    issue(ca, &[], cn, ExtendedKeyUsagePurpose::ClientAuth)
}

/// A self-signed certificate and its key for signing tokens (the registry's `rootcertbundle`).
/// Returns (cert PEM, cert DER, PKCS#8 key PEM).
pub fn self_signed_signing_cert(cn: &str) -> (String, Vec<u8>, String) {
    let key = KeyPair::generate().expect("signing key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("signing params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params);
    let cert = params.self_signed(&key).expect("self-sign signing cert");
    (cert.pem(), cert.der().to_vec(), key.serialize_pem())
}
