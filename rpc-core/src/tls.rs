//! TLS for the TCP transport (feature `tls`, on by default), with rustls.
//!
//! The frames and messages are exactly those of plain TCP, inside a TLS
//! session. These helpers turn PEM files (or PEM bytes) into rustls
//! configurations; anything more specific can be built with rustls directly
//! and handed to [`ServerBuilder::tls`](crate::ServerBuilder::tls) or
//! [`ClientBuilder::tls`](crate::ClientBuilder::tls).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rpc_core::tls;
//! let server_tls = tls::server_config(
//!     &tls::read_pem("server.crt")?,
//!     &tls::read_pem("server.key")?,
//!     None, // no client certificates required
//! )?;
//! let server = rpc_core::Server::builder().tls(server_tls).bind("127.0.0.1:7443").await?;
//!
//! let client_tls = tls::client_config(&tls::read_pem("ca.crt")?, None)?;
//! let client = rpc_core::Client::builder()
//!     .tls(client_tls, "localhost")?
//!     .connect(server.local_addr())
//!     .await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The PEM text holds no item of the kind needed.
    #[error(
        "no {what} found in the PEM data; check that the file is the right one and PEM-encoded"
    )]
    Missing {
        /// What was looked for.
        what: &'static str,
    },
    /// The PEM text is malformed.
    #[error("malformed PEM ({what}): {detail}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// The name given for the server is neither a DNS name nor an IP address.
    #[error(
        "`{name}` is not a valid server name for TLS ({detail}); give the DNS name or IP address the server's certificate is for"
    )]
    ServerName {
        /// The name given.
        name: String,
        /// What was wrong with it.
        detail: String,
    },
    /// rustls refused the configuration (a key that does not match the
    /// certificate, an unusable CA, ...).
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// Reads a PEM file into memory.
pub fn read_pem(path: impl AsRef<Path>) -> Result<Vec<u8>, TlsError> {
    let path = path.as_ref();
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing { what });
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            what: "private key",
        },
        other => TlsError::Pem {
            what: "private key",
            detail: other.to_string(),
        },
    })
}

fn roots(pem: &[u8], what: &'static str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(pem, what)? {
        store
            .add(cert)
            .map_err(|e| TlsError::Config(e.to_string()))?;
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a certificate chain and its private key (PEM).
/// With `client_ca`, clients must present a certificate signed by it.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots(ca, "client CA certificate")?,
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(
            certificates(cert_chain_pem, "certificate")?,
            private_key(key_pem)?,
        )
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts the CA certificates in `ca_pem`, and
/// presents `identity` (certificate chain and key, PEM) if given.
pub fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca_pem, "CA certificate")?);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                certificates(chain, "client certificate")?,
                private_key(key)?,
            )
            .map_err(|e| TlsError::Config(e.to_string()))?,
    };
    Ok(Arc::new(config))
}
