//! [`Trust`] (the federation CA and its CRLs) and the rustls/quinn configurations built from it:
//! ring provider, TLS 1.3 only, ALPN `tsunagi/1`, client certificates mandatory.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, VarInt};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tsunagi_certs::RevocationList;

use super::{TransportConfig, TransportError, ALPN};

/// What a gateway trusts: the federation CA certificate and its CRL(s).
///
/// Peers must present a certificate issued by `ca` and not revoked in any of `crls`. Build it
/// with [`Trust::new`] or [`Trust::from_files`]; both check that every CRL is signed by the CA
/// (a CRL from elsewhere would make every peer's revocation status unknown, and so refused).
#[derive(Clone)]
pub struct Trust {
    ca: CertificateDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    /// Cross-certificates from our CA recognising other prefectures' CAs: offered to the path
    /// validator as intermediates, whatever the peer sends (see [`Trust::recognise`]).
    recognised: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("ca_bytes", &self.ca.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl Trust {
    /// Trust in the CA certificate `ca` (DER) with the CRLs `crls` (DER), each checked to be
    /// signed by `ca`. With no CRL, revocation is not checked.
    pub fn new(
        ca: CertificateDer<'static>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Trust, TransportError> {
        for (i, crl) in crls.iter().enumerate() {
            let parsed = RevocationList::from_der(crl)
                .map_err(|e| TransportError::config(format!("CRL #{}: {e}", i + 1)))?;
            parsed.verify_signed_by(&ca).map_err(|e| {
                TransportError::config(format!("CRL #{} is not from the trusted CA: {e}", i + 1))
            })?;
        }
        let trust = Trust {
            ca,
            crls,
            recognised: Vec::new(),
        };
        // Fail now, not at the first handshake, if rustls cannot use them.
        trust.roots()?;
        Ok(trust)
    }

    /// Reads the CA certificate from the PEM file `ca_pem` (e.g. the gateway's `ca.pem`) and
    /// each CRL from a PEM file (e.g. the federation's `crl.pem`).
    pub fn from_files<P: AsRef<Path>>(
        ca_pem: impl AsRef<Path>,
        crl_pems: impl IntoIterator<Item = P>,
    ) -> Result<Trust, TransportError> {
        let ca_path = ca_pem.as_ref();
        let ca = CertificateDer::from_pem_file(ca_path).map_err(|e| {
            TransportError::config(format!(
                "cannot read the CA certificate {}: {e}",
                ca_path.display()
            ))
        })?;
        let mut crls = Vec::new();
        for path in crl_pems {
            let path = path.as_ref();
            let crl = tsunagi_certs::load_crl(path).map_err(TransportError::config)?;
            // The error names the CRL file and both CAs.
            crl.verify_signed_by(&ca).map_err(TransportError::config)?;
            crls.push(CertificateRevocationListDer::from(crl.der().to_vec()));
        }
        Trust::new(ca, crls)
    }

    /// Adds other prefectures' CAs: their cross-certificates (issued by our CA) and their CRLs,
    /// as [`tsunagi_certs::FederationTrust::recognise`] has checked them. A peer certificate
    /// issued by a recognised CA must name an org of that CA's prefecture.
    pub fn recognise(
        mut self,
        recognised: impl IntoIterator<
            Item = (
                CertificateDer<'static>,
                CertificateRevocationListDer<'static>,
            ),
        >,
    ) -> Trust {
        for (cross, crl) in recognised {
            self.recognised.push(cross);
            self.crls.push(crl);
        }
        self
    }

    /// The trusted CA certificate (DER).
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The CRLs (DER).
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TransportError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(|e| {
            TransportError::config(format!(
                "the CA certificate is not a usable trust anchor: {e}"
            ))
        })?;
        Ok(Arc::new(roots))
    }
}

/// The ring crypto provider: the only one tsunagi uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Everything built from credentials + trust + config.
pub(crate) struct Built {
    pub(crate) server: quinn::ServerConfig,
    pub(crate) client: quinn::ClientConfig,
    /// The verifier inside `server`, to re-check live connections after a trust reload.
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
}

/// Our identity: the TLS chain and key to present.
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

pub(crate) fn build(
    identity: &Identity,
    trust: &Trust,
    cfg: &TransportConfig,
) -> Result<Built, TransportError> {
    let provider = provider();
    let roots = trust.roots()?;

    // Server side: client certificates are mandatory and checked against the CA and CRLs.
    let mut client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(trust.crls.iter().cloned())
            .build()
            .map_err(|e| TransportError::config(format!("client certificate verifier: {e}")))?;
    if !trust.recognised.is_empty() {
        client_verifier = Arc::new(super::recognised::Recognising::new(
            client_verifier,
            trust.recognised.clone(),
        ));
    }
    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::config(format!("TLS 1.3 server config: {e}")))?
        .with_client_cert_verifier(client_verifier.clone())
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TransportError::config(format!("our TLS certificate or key: {e}")))?;
    server_tls.alpn_protocols = vec![ALPN.to_vec()];
    let server_crypto = QuicServerConfig::try_from(server_tls)
        .map_err(|e| TransportError::config(format!("QUIC server TLS: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(Arc::new(server_transport(cfg)?));

    // Client side: the server's certificate is checked against the same CA and CRLs.
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(trust.crls.iter().cloned())
        .build()
        .map_err(|e| TransportError::config(format!("server certificate verifier: {e}")))?;
    let server_verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        if trust.recognised.is_empty() {
            server_verifier
        } else {
            Arc::new(super::recognised::Recognising::new(
                server_verifier,
                trust.recognised.clone(),
            ))
        };
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::config(format!("TLS 1.3 client config: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TransportError::config(format!("our TLS certificate or key: {e}")))?;
    client_tls.alpn_protocols = vec![ALPN.to_vec()];
    let client_crypto = QuicClientConfig::try_from(client_tls)
        .map_err(|e| TransportError::config(format!("QUIC client TLS: {e}")))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(Arc::new(client_transport(cfg)?));

    Ok(Built {
        server,
        client,
        client_verifier,
    })
}

fn idle_timeout(cfg: &TransportConfig) -> Result<IdleTimeout, TransportError> {
    if cfg.idle_timeout.is_zero() {
        return Err(TransportError::config(
            "the idle timeout must be longer than zero",
        ));
    }
    IdleTimeout::try_from(cfg.idle_timeout).map_err(|_| {
        TransportError::config(format!("idle timeout {:?} is too long", cfg.idle_timeout))
    })
}

/// Incoming connections: the peer may open `per_peer_streams` bidirectional streams at once and
/// nothing else.
fn server_transport(cfg: &TransportConfig) -> Result<quinn::TransportConfig, TransportError> {
    if cfg.per_peer_streams == 0 {
        return Err(TransportError::config(
            "per_peer_streams must be at least 1",
        ));
    }
    if cfg.per_peer_connections == 0 {
        return Err(TransportError::config(
            "per_peer_connections must be at least 1",
        ));
    }
    let streams = VarInt::from_u64(cfg.per_peer_streams as u64)
        .map_err(|_| TransportError::config("per_peer_streams is too large"))?;
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle_timeout(cfg)?))
        .max_concurrent_bidi_streams(streams)
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None);
    Ok(t)
}

/// Outgoing connections: the server may open a few streams to ask back (the consent fetch,
/// [`super::BACK_STREAMS`]); keep-alives stop an idle connection from timing out while a handler
/// takes its time (and keep the cached one warm).
fn client_transport(cfg: &TransportConfig) -> Result<quinn::TransportConfig, TransportError> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle_timeout(cfg)?))
        .keep_alive_interval(Some(cfg.idle_timeout / 3))
        .max_concurrent_bidi_streams(VarInt::from_u32(super::BACK_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None);
    Ok(t)
}
