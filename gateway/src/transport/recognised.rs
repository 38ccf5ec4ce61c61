//! [`Recognising`]: a TLS certificate verifier that also accepts peers of other prefectures
//! whose CAs our CA recognises by cross-certificate (`tsunagi_certs::cross`).
//!
//! It hands the cross-certificates to the WebPKI verifier as intermediates, after whatever the
//! peer sent, so that a path leaf → cross-certificate → our CA is found; the peer's own chain
//! decides nothing. A peer certificate validated through a cross-certificate must then name an
//! org of that prefecture.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// A verifier `V` with the cross-certificates added as intermediates.
#[derive(Debug)]
pub(crate) struct Recognising<V: ?Sized> {
    inner: Arc<V>,
    crosses: Vec<CertificateDer<'static>>,
}

impl<V: ?Sized> Recognising<V> {
    pub(crate) fn new(inner: Arc<V>, crosses: Vec<CertificateDer<'static>>) -> Self {
        Recognising { inner, crosses }
    }

    fn intermediates(&self, sent: &[CertificateDer<'_>]) -> Vec<CertificateDer<'static>> {
        sent.iter()
            .map(|c| c.clone().into_owned())
            .chain(self.crosses.iter().cloned())
            .collect()
    }

    fn check_org(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        tsunagi_certs::cross::check_peer_org(leaf, &self.crosses)
            .map_err(|e| rustls::Error::General(e.to_string()))
    }
}

impl<V: ClientCertVerifier + ?Sized> ClientCertVerifier for Recognising<V> {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified =
            self.inner
                .verify_client_cert(end_entity, &self.intermediates(intermediates), now)?;
        self.check_org(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl<V: ServerCertVerifier + ?Sized> ServerCertVerifier for Recognising<V> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            &self.intermediates(intermediates),
            server_name,
            ocsp_response,
            now,
        )?;
        self.check_org(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
