//! TLS (`[tls]`): loading the certificate, key and client CA with rustls,
//! and swapping them on reload without touching open connections.
//!
//! rustls runs on the `ring` provider, which builds with a C compiler alone.
//! The acceptor in use sits behind a lock that is taken once per accepted
//! connection; a reload builds a complete new configuration first and swaps
//! it in only when every file loaded, so a bad file keeps the old
//! certificate. Open connections keep the configuration they started with.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSettings;

/// A TLS file that cannot be used. Each variant names the file and its
/// configuration key (`tls.cert`, `tls.key`, `tls.client_ca`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read `{key}` file {}: {source}", path.display())]
    Read {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not PEM, or holds nothing of the kind needed.
    #[error("`{key}` file {} {reason}", path.display())]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "the private key in {} (`tls.key`) does not match the certificate in {} (`tls.cert`)",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// [`Server::reload_tls`](crate::Server::reload_tls) on a server without TLS.
    #[error("TLS is not configured (no `[tls]` settings)")]
    NotConfigured,
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn invalid(key: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        key,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            path,
            "holds no certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("tls.key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => invalid(
            "tls.key",
            path,
            "holds no private key (`-----BEGIN PRIVATE KEY-----`, RSA or EC)",
        ),
        e => invalid("tls.key", path, format!("is not valid PEM: {e}")),
    })
}

/// Builds the rustls configuration from the files.
pub(crate) fn server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = certificates("tls.cert", &settings.cert)?;
    let key = private_key(&settings.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls.cert", &settings.cert, e.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("tls.client_ca", ca)? {
                roots.add(cert).map_err(|e| {
                    invalid(
                        "tls.client_ca",
                        ca,
                        format!("holds a bad CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("tls.client_ca", ca, format!("cannot be used: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
        },
        e => invalid("tls.key", &settings.key, format!("cannot be used: {e}")),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS settings and the acceptor for new connections.
pub(crate) struct Tls {
    settings: TlsSettings,
    acceptor: RwLock<TlsAcceptor>,
}

impl Tls {
    /// Loads the files.
    pub(crate) fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let config = server_config(&settings)?;
        Ok(Self {
            settings,
            acceptor: RwLock::new(TlsAcceptor::from(config)),
        })
    }

    /// Reads the files again and uses them for new connections; on error the
    /// acceptor in use stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        *self
            .acceptor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = TlsAcceptor::from(config);
        Ok(())
    }

    /// The acceptor for a new connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
