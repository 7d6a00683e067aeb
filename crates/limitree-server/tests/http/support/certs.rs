//! Certificates made in the test (rcgen): a CA, and a certificate for
//! `127.0.0.1` and `localhost` it signed, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The files [`make_certificates`] wrote.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate, signed by the CA.
    pub cert: PathBuf,
    /// The server certificate's private key.
    pub key: PathBuf,
}

/// Writes `<name>-ca.pem`, `<server>.pem` and `<server>.key` into `dir`: a CA named
/// after `name`, and a certificate for 127.0.0.1 and localhost it signed.
pub fn make_certificates(dir: &Path, name: &str, server: &str) -> Certificates {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("limitree test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca).unwrap();
    let files = Certificates {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{server}.pem")),
        key: dir.join(format!("{server}.key")),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}
