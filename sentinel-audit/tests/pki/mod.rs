//! Certificates the TLS tests make: a CA, a server certificate it signs
//! for 127.0.0.1 and localhost, and a second CA nobody trusts. Shared by
//! the syslog and webhook tests (`#[path]`-included).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

pub struct Pki {
    /// PEM files: the CA, the server certificate and its key.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

impl Pki {
    /// A CA and a server certificate it signed, written to `dir`.
    pub fn make(dir: &Path) -> Pki {
        Self::make_signed_by(dir, &ca("Sentinel test CA"))
    }

    /// A server certificate signed by a CA that is not written anywhere
    /// (so nothing trusts it); `ca` is a different, unrelated CA.
    pub fn make_untrusted(dir: &Path) -> Pki {
        let stranger = ca("Somebody else's CA");
        let mut pki = Self::make_signed_by(dir, &stranger);
        std::fs::write(&pki.ca, ca("Sentinel test CA").pem()).expect("write CA");
        pki.ca = dir.join("ca.pem");
        pki
    }

    fn make_signed_by(dir: &Path, issuer: &CertifiedIssuer<'static, KeyPair>) -> Pki {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&key, issuer).expect("server certificate");
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&pki.ca, issuer.pem()).expect("write CA");
        std::fs::write(&pki.cert, &pki.cert_pem).expect("write certificate");
        std::fs::write(&pki.key, &pki.key_pem).expect("write key");
        pki
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config"),
        )
    }
}
