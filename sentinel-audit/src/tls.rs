//! TLS for everything Sentinel sends off the host (syslog over TLS, RFC
//! 5425, and HTTPS webhooks): one client configuration — rustls with the
//! system's CA roots plus an optional PEM file of extra CAs — and a
//! blocking connect that finishes the handshake before anything is sent,
//! so a certificate the roots do not vouch for is an error at connect,
//! never a plaintext fallback.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A TLS stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error(
        "no CA certificates: the system store (/etc/ssl/certs) is empty and no CA file was given"
    )]
    NoRoots,
    #[error("TLS set-up: {0}")]
    Setup(String),
}

/// A client configuration trusting the system roots and, when given, the
/// CA certificates in `ca_file` (PEM).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    let mut total = added;
    if let Some(path) = ca_file {
        let ca_error = |reason: String| TlsError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
            total += 1;
        }
    }
    if total == 0 {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Wraps a connected TCP stream and completes the handshake with `host`
/// (a name or an IP address, checked against the certificate). A
/// certificate problem comes back as [`io::ErrorKind::InvalidData`] with
/// the reason, so callers can tell it from a network error.
pub fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    mut tcp: TcpStream,
) -> io::Result<TlsStream> {
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?
        .to_owned();
    let mut conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| io::Error::other(format!("TLS with {host}: {e}")))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return Err(classify(host, e));
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// A rustls error during I/O arrives as an `io::Error` wrapping it;
/// certificate and protocol failures become `InvalidData` with a message
/// that says what to fix.
fn classify(host: &str, e: io::Error) -> io::Error {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        let hint = match tls {
            rustls::Error::InvalidCertificate(_) => {
                "; the server's certificate is not trusted: give its CA with the CA-file option, or fix the certificate (nothing is sent in plaintext)"
            }
            _ => "",
        };
        return io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TLS handshake with {host} failed: {tls}{hint}"),
        );
    }
    io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}"))
}

/// Whether an error from [`connect`] or a TLS write is one retrying will
/// not fix (a certificate or protocol failure).
pub fn is_permanent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}
