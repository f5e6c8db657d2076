//! Reaching the provider: one HTTP/1.1 connection per request, over TLS
//! (rustls, the system's trust store plus an optional extra CA) for
//! `https://` upstreams and plain TCP for `http://` ones. The response
//! body is handed back as it arrives, so streams stay streams.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Connects to upstreams.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
}

impl Connector {
    /// The system's roots, plus the PEM certificates in `extra_ca` (for a
    /// private gateway).
    pub fn new(extra_ca: Option<&Path>) -> Result<Connector, String> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            let mut added = 0;
            for cert in rustls_pemfile_certs(&pem) {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a certificate is not usable: {e}", path.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("{}: no PEM certificate found", path.display()));
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends `request` (its URI absolute) and returns the response head
    /// with the body still streaming.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        let uri = request.uri().clone();
        let host = uri
            .host()
            .ok_or("the upstream URL has no host")?
            .to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let request = origin_form(request, &uri);
        if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
            exchange(TokioIo::new(tls), request).await
        } else {
            exchange(TokioIo::new(tcp), request).await
        }
    }
}

/// HTTP/1.1 wants the path in the request line and the host in `Host`.
fn origin_form(mut request: Request<Full<Bytes>>, uri: &Uri) -> Request<Full<Bytes>> {
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    if let Ok(origin) = path.parse() {
        *request.uri_mut() = origin;
    }
    if let Some(authority) = uri.authority() {
        if let Ok(value) = authority.as_str().parse() {
            request.headers_mut().insert(hyper::header::HOST, value);
        }
    }
    request
}

async fn exchange<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with the upstream failed: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("the upstream did not answer: {e}"))
}

/// The certificates in a PEM file.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}
