//! TLS on the gRPC listener (`[server] grpc_tls = { cert, key }`).
//!
//! Envoy's rate-limit cluster speaks h2c by default, and so does limitree's
//! listener; with a certificate and key it speaks gRPC over TLS instead (and
//! only that: a plaintext client is refused). tonic does the TLS (rustls with
//! ring, the one crypto provider in the build); this module reads the files
//! once, when the config loads, so a missing file, a file that holds no PEM
//! certificate or key, or a key that does not go with the certificate is a
//! config error naming the path (`limitree config check` reports it, and
//! `limitree serve` exits 64) rather than a listener that fails later.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Identity, ServerTlsConfig};

/// Longest a client may take to complete the TLS handshake: one that
/// connects and sends nothing holds its connection no longer than this
/// (tonic runs each handshake in its own task, so slow ones do not hold up
/// the others).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest certificate or key file read. Real ones are a few KiB; the cap
/// keeps a wrong path (a log file, a device) from being read into memory.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// The gRPC listener's certificate chain and key, checked and ready for
/// tonic. Compared by path; its `Debug` shows the paths, never the key.
#[derive(Clone)]
pub struct GrpcTls {
    /// The PEM file of the certificate chain, leaf first.
    pub cert: PathBuf,
    /// The PEM file of the leaf certificate's private key.
    pub key: PathBuf,
    config: ServerTlsConfig,
}

impl std::fmt::Debug for GrpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PartialEq for GrpcTls {
    fn eq(&self, other: &Self) -> bool {
        self.cert == other.cert && self.key == other.key
    }
}

impl Eq for GrpcTls {}

/// Why `grpc_tls` cannot be used; each names the file and what to give.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read `{path}`: {source}; give the path of a PEM file")]
    Read {
        /// `grpc_tls.cert` or `grpc_tls.key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PEM_BYTES`].
    #[error("`{path}` is larger than 1 MiB, which no PEM certificate or key is; check the path")]
    TooLarge {
        /// `grpc_tls.cert` or `grpc_tls.key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// No certificate in the certificate file.
    #[error(
        "`{path}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`){detail}; give the server's certificate chain, leaf first"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found wrong, if anything.
        detail: String,
    },
    /// No private key in the key file.
    #[error(
        "`{path}` holds no PEM private key (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`){detail}; give the certificate's private key"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found wrong, if anything.
        detail: String,
    },
    /// rustls refuses the pair (the key is not the certificate's, or of a
    /// kind it cannot sign with).
    #[error(
        "the key in `{key}` cannot serve the certificate in `{cert}`: {reason}; give the private key that belongs to the certificate's leaf"
    )]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        reason: rustls::Error,
    },
}

impl TlsError {
    /// The `grpc_tls` key the problem is about, for its place in the file.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Read { field, .. } | TlsError::TooLarge { field, .. } => field,
            TlsError::NoCertificate { .. } => "grpc_tls.cert",
            TlsError::NoKey { .. } => "grpc_tls.key",
            TlsError::Unusable { .. } => "grpc_tls",
        }
    }
}

impl GrpcTls {
    /// Reads and checks `cert` and `key` (paths relative to the working
    /// directory, as every path of the config).
    pub fn load(cert: &Path, key: &Path) -> Result<GrpcTls, TlsError> {
        let cert_pem = read_pem(cert, "grpc_tls.cert")?;
        let key_pem = read_pem(key, "grpc_tls.key")?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::NoCertificate {
                path: cert.to_owned(),
                detail: format!(" ({e})"),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: cert.to_owned(),
                detail: String::new(),
            });
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
            path: key.to_owned(),
            detail: match e {
                rustls::pki_types::pem::Error::NoItemsFound => String::new(),
                e => format!(" ({e})"),
            },
        })?;
        // The same check tonic's acceptor makes, made here so that its
        // failure names the files.
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|reason| TlsError::Unusable {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason,
            })?;
        Ok(GrpcTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            config: ServerTlsConfig::new()
                .identity(Identity::from_pem(cert_pem, key_pem))
                .timeout(HANDSHAKE_TIMEOUT),
        })
    }

    /// tonic's server TLS settings for these files.
    pub fn server_config(&self) -> ServerTlsConfig {
        self.config.clone()
    }
}

/// The file at `path` (the value of `field`), at most [`MAX_PEM_BYTES`] of it.
fn read_pem(path: &Path, field: &'static str) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        field,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            field,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}
