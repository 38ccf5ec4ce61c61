//! Other prefectures this gateway's CA recognises by cross-certificate (`[[recognise]]` in
//! `gateway.toml`): their cross-certificates and CRLs join the trust (documents and TLS alike),
//! and their signed directories join ours ([`tsunagi_protocol::federation::join`]).
//!
//! Everything is checked when the gateway starts and whenever the files change: a cross-certificate
//! not from our CA or naming another prefecture, a CRL not from the recognised CA, a directory not
//! signed by it, expired, listing an org or municipality outside its prefecture (its `ot:`
//! members are left out: no other prefecture's CA can vouch for them), or with an entry no
//! gateway could reach (`address` not ip:port, bad `host`) is an error naming the file.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use tsunagi_certs::FederationTrust;
use tsunagi_protocol::directory::Directory;
use tsunagi_protocol::{OrgId, Timestamp};

use crate::config::Config;
use crate::transport::Trust;

/// Adds the recognised prefectures to both trusts.
pub fn recognise(
    cfg: &Config,
    federation: FederationTrust,
    tls: Trust,
) -> Result<(FederationTrust, Trust), String> {
    if cfg.recognise.is_empty() {
        return Ok((federation, tls));
    }
    let mut pairs = Vec::new();
    let mut tls_pairs = Vec::new();
    for r in &cfg.recognise {
        let cross = CertificateDer::from_pem_file(&r.cross).map_err(|e| {
            format!(
                "{}: cannot read the cross-certificate: {e}",
                r.cross.display()
            )
        })?;
        let crl = tsunagi_certs::load_crl(&r.crl).map_err(|e| e.to_string())?;
        pairs.push((
            r.cross.display().to_string(),
            cross.to_vec(),
            crl.der().to_vec(),
        ));
        tls_pairs.push((
            cross,
            CertificateRevocationListDer::from(crl.der().to_vec()),
        ));
    }
    let federation = federation.recognise(pairs).map_err(|e| e.to_string())?;
    for (r, recognised) in cfg.recognise.iter().zip(federation.recognised()) {
        if recognised.prefecture != r.prefecture {
            return Err(format!(
                "{}: the cross-certificate recognises {} but the configuration says prefecture = {}",
                r.cross.display(),
                recognised.prefecture,
                r.prefecture
            ));
        }
    }
    Ok((federation, tls.recognise(tls_pairs)))
}

/// Verifies each recognised prefecture's directory against its CA and joins it to `ours`.
pub fn join_directories(
    cfg: &Config,
    ours: &mut Directory,
    trust: &FederationTrust,
    now: Timestamp,
) -> Result<(), String> {
    for r in &cfg.recognise {
        let at = r.directory.display();
        let signer = trust.recognised_signer(&r.prefecture).ok_or_else(|| {
            format!(
                "{at}: prefecture {} is not recognised by a cross-certificate",
                r.prefecture
            )
        })?;
        let bytes = std::fs::read(&r.directory).map_err(|e| format!("cannot read {at}: {e}"))?;
        let theirs = Directory::verify(&bytes, &signer, now, &Directory::limits())
            .map_err(|e| format!("{at}: {e}"))?;
        if let Some(e) = theirs.check_endpoints().into_iter().next() {
            return Err(format!("{at}: {e}: no gateway could reach it"));
        }
        let left_out = tsunagi_protocol::federation::join(ours, theirs, &r.prefecture)
            .map_err(|e| format!("{at}: {e}"))?;
        if !left_out.is_empty() {
            tracing::info!(
                "{at}: {} not joined: ot: ids name no prefecture, so they stay within {}",
                left_out
                    .iter()
                    .map(OrgId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                r.prefecture
            );
        }
    }
    Ok(())
}

/// The files to watch: the recognised prefectures' CRLs, directories and cross-certificates.
pub fn files(cfg: &Config) -> Vec<std::path::PathBuf> {
    cfg.recognise
        .iter()
        .flat_map(|r| [r.crl.clone(), r.directory.clone(), r.cross.clone()])
        .collect()
}
