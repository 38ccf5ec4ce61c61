//! Batch sealing per peer link: one task per peer seals what is ready with one signature.
//!
//! [`Sealers`] owns, for each peer, a task that takes every body waiting to be sealed for that
//! peer — envelopes on the sending side, receipts on the receiving side — and seals them as one
//! batch ([`tsunagi_protocol::batch`]: one Ed25519 signature over a Merkle root, an inclusion
//! path per body). It never waits for a batch to fill, as a group commit does not: while one
//! batch is being signed the next one gathers, so a lone body is a batch of one and 64 bodies
//! submitted together cost one signature. Callers get their own sealed bytes back and carry on
//! (the sender's outbox write, the receiver's inbox write); nothing is stored here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tsunagi_protocol::batch;
use tsunagi_protocol::cose::Signer;
use tsunagi_protocol::OrgId;

/// The most bodies sealed under one signature (a bound on the latency a batch adds, and on
/// each inclusion path: 8 hashes).
pub const MAX_BATCH: usize = 256;

/// One body waiting to be sealed, with the signer to seal it (the newest credentials) and where
/// its sealed bytes go.
struct Request {
    body: Vec<u8>,
    signer: Arc<Signer>,
    reply: oneshot::Sender<Vec<u8>>,
}

/// The sealing task of a link is gone: the runtime is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is shutting down; nothing was sealed")]
pub struct LinkClosed;

/// Batch sealers of one type (`typ` of the bodies), one task per peer.
pub struct Sealers {
    typ: &'static str,
    links: Mutex<HashMap<OrgId, mpsc::UnboundedSender<Request>>>,
}

impl Sealers {
    /// Sealers for bodies of type `typ` ([`tsunagi_protocol::cose::TYP_ENVELOPE`] or
    /// [`tsunagi_protocol::cose::TYP_RECEIPT`]).
    pub fn new(typ: &'static str) -> Self {
        Self {
            typ,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Seals `body` for `peer` with `signer` in the next batch for that peer; returns the bytes
    /// to transmit. Must be called within a tokio runtime.
    pub async fn seal(
        &self,
        peer: &OrgId,
        body: Vec<u8>,
        signer: Arc<Signer>,
    ) -> Result<Vec<u8>, LinkClosed> {
        let (reply, sealed) = oneshot::channel();
        let request = Request {
            body,
            signer,
            reply,
        };
        self.link(peer).send(request).map_err(|_| LinkClosed)?;
        sealed.await.map_err(|_| LinkClosed)
    }

    fn link(&self, peer: &OrgId) -> mpsc::UnboundedSender<Request> {
        let mut links = self.links.lock().expect("links");
        if let Some(tx) = links.get(peer).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(self.typ, rx));
        links.insert(peer.clone(), tx.clone());
        tx
    }
}

/// The link task: waits for one body, takes every other one already waiting (never more),
/// seals them together and answers each.
async fn run(typ: &'static str, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut waiting: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        // A credential rotation between two requests splits the batch: each part is sealed
        // with the signer its requests carry.
        while let Some(first) = waiting.first() {
            let signer = first.signer.clone();
            let end = waiting
                .iter()
                .position(|r| !Arc::ptr_eq(&r.signer, &signer))
                .unwrap_or(waiting.len());
            bodies.extend(
                waiting[..end]
                    .iter_mut()
                    .map(|r| std::mem::take(&mut r.body)),
            );
            let sealed = batch::seal(&signer, typ, &bodies);
            bodies.clear();
            for (r, s) in waiting.drain(..end).zip(sealed) {
                // A caller that gave up no longer needs its bytes.
                let _ = r.reply.send(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_protocol::cbor::Limits;
    use tsunagi_protocol::cose::TYP_ENVELOPE;
    use tsunagi_protocol::testkit::{chains, org, signer};
    use tsunagi_protocol::Timestamp;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_bodies_share_a_signature_and_each_verifies_alone() {
        let sealers = Arc::new(Sealers::new(TYP_ENVELOPE));
        let s = Arc::new(signer("lg:131059"));
        let peer = org("ot:npo-komorebi");
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let (sealers, s, peer) = (sealers.clone(), s.clone(), peer.clone());
                tokio::spawn(async move {
                    sealers
                        .seal(&peer, i.to_be_bytes().to_vec(), s)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut sizes = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let bytes = t.await.unwrap();
            let opened = batch::open(
                &bytes,
                TYP_ENVELOPE,
                "envelope",
                &chains(),
                Timestamp(0),
                &Limits::default(),
            )
            .unwrap();
            assert_eq!(opened.body, (i as u32).to_be_bytes().to_vec());
            assert_eq!(opened.signer.org.as_str(), "lg:131059");
            sizes.push(opened.head.size);
        }
        // Bodies submitted together were sealed together: fewer signatures than bodies.
        assert!(sizes.iter().any(|&n| n > 1), "no batch formed: {sizes:?}");
    }

    #[tokio::test]
    async fn a_lone_body_is_a_batch_of_one() {
        let sealers = Sealers::new(TYP_ENVELOPE);
        let bytes = sealers
            .seal(
                &org("ot:npo-komorebi"),
                b"alone".to_vec(),
                Arc::new(signer("lg:131059")),
            )
            .await
            .unwrap();
        let s = batch::Sealed::parse(&bytes, "envelope", &Limits::default()).unwrap();
        assert!(s.path.is_empty() && s.index == 0);
    }
}
