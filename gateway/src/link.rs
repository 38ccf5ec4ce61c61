//! Batch sealing and group writing per peer link: one task per peer seals what is ready with one
//! signature and writes it with one durable commit.
//!
//! [`Sealers`] owns, for each peer, a task that takes every body waiting to be sealed for that
//! peer — envelopes on the sending side, receipts on the receiving side — and seals them as one
//! batch ([`tsunagi_protocol::batch`]: one Ed25519 signature over a Merkle root, an inclusion
//! path per body). It then hands the sealed bytes, each with the caller's pending writes, to the
//! link's commit function (the sender's outbox write, the receiver's inbox write), which writes
//! them as one durable commit. It never waits for a batch to fill, as a group commit does not:
//! while one batch waits for its fsync, the next one gathers, so a lone body is a batch of one
//! and bodies that arrive together share one signature and one fsync. The task blocks only for
//! its group's commit; callers get their own sealed bytes back once they are durable.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tsunagi_protocol::batch;
use tsunagi_protocol::cose::Signer;
use tsunagi_protocol::OrgId;

/// The most bodies sealed under one signature (a bound on the latency a batch adds, and on
/// each inclusion path: 8 hashes).
pub const MAX_BATCH: usize = 256;

/// What a link's commit function returns: for each item, in order, whether it was written.
pub type Committed<E> = Pin<Box<dyn Future<Output = Vec<Result<(), E>>> + Send>>;

/// Writes a group of sealed bodies, each with its caller's pending writes `T`, durably.
pub type CommitFn<T, E> = fn(Vec<(Vec<u8>, T)>) -> Committed<E>;

/// The link's task is gone: the runtime is shutting down, nothing was sealed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is shutting down; nothing was sealed")]
pub struct LinkClosed;

/// One body waiting to be sealed, with the signer to seal it (the newest credentials), the
/// caller's pending writes and where the outcome goes.
struct Request<T, E> {
    body: Vec<u8>,
    signer: Arc<Signer>,
    pending: T,
    reply: oneshot::Sender<Result<Vec<u8>, E>>,
}

/// Batch sealers of one type (`typ` of the bodies), one task per peer.
pub struct Sealers<T, E> {
    typ: &'static str,
    commit: CommitFn<T, E>,
    links: Mutex<HashMap<OrgId, mpsc::UnboundedSender<Request<T, E>>>>,
}

impl<T: Send + 'static, E: From<LinkClosed> + Send + 'static> Sealers<T, E> {
    /// Sealers for bodies of type `typ` ([`tsunagi_protocol::cose::TYP_ENVELOPE`] or
    /// [`tsunagi_protocol::cose::TYP_RECEIPT`]) whose groups `commit` writes.
    pub fn new(typ: &'static str, commit: CommitFn<T, E>) -> Self {
        Self {
            typ,
            commit,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Seals `body` for `peer` with `signer` in the next batch for that peer and writes it with
    /// `pending` in that batch's commit; returns the bytes to transmit once they are durable.
    /// Must be called within a tokio runtime.
    pub async fn seal(
        &self,
        peer: &OrgId,
        body: Vec<u8>,
        signer: Arc<Signer>,
        pending: T,
    ) -> Result<Vec<u8>, E> {
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            body,
            signer,
            pending,
            reply,
        };
        self.link(peer).send(request).map_err(|_| LinkClosed)?;
        outcome.await.map_err(|_| LinkClosed)?
    }

    fn link(&self, peer: &OrgId) -> mpsc::UnboundedSender<Request<T, E>> {
        let mut links = self.links.lock().expect("links");
        if let Some(tx) = links.get(peer).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(self.typ, self.commit, rx));
        links.insert(peer.clone(), tx.clone());
        tx
    }
}

/// The link task: waits for one body, takes every other one already waiting (never more),
/// seals them together, commits them together and answers each.
async fn run<T: Send + 'static, E: Send + 'static>(
    typ: &'static str,
    commit: CommitFn<T, E>,
    mut rx: mpsc::UnboundedReceiver<Request<T, E>>,
) {
    let mut waiting: Vec<Request<T, E>> = Vec::with_capacity(MAX_BATCH);
    let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        // A credential rotation between two requests splits the batch: each part is sealed
        // with the signer its requests carry.
        let mut sealed = Vec::with_capacity(waiting.len());
        let mut start = 0;
        while start < waiting.len() {
            let signer = waiting[start].signer.clone();
            let end = waiting[start..]
                .iter()
                .position(|r| !Arc::ptr_eq(&r.signer, &signer))
                .map_or(waiting.len(), |n| start + n);
            bodies.extend(
                waiting[start..end]
                    .iter_mut()
                    .map(|r| std::mem::take(&mut r.body)),
            );
            // Heads name the signer's chain by fingerprint: the peer holds it or fetches it once.
            sealed.extend(batch::seal_by_kid(&signer, typ, &bodies));
            bodies.clear();
            start = end;
        }
        let mut replies = Vec::with_capacity(waiting.len());
        let items: Vec<(Vec<u8>, T)> = waiting
            .drain(..)
            .zip(sealed)
            .map(|(r, s)| {
                replies.push(r.reply);
                (s, r.pending)
            })
            .collect();
        let copies: Vec<Vec<u8>> = items.iter().map(|(s, _)| s.clone()).collect();
        let outcomes = commit(items).await;
        for ((reply, sealed), outcome) in replies.into_iter().zip(copies).zip(outcomes) {
            // A caller that gave up no longer needs its bytes.
            let _ = reply.send(outcome.map(|()| sealed));
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

    /// Commits nothing but waits a little, as an fsync would, and refuses item 13.
    #[derive(Debug, PartialEq)]
    struct Refused;
    impl From<LinkClosed> for Refused {
        fn from(_: LinkClosed) -> Self {
            Refused
        }
    }

    fn slow_commit(items: Vec<(Vec<u8>, u32)>) -> Committed<Refused> {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            items
                .iter()
                .map(|(_, i)| if *i == 13 { Err(Refused) } else { Ok(()) })
                .collect()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_ready_together_share_a_signature_and_a_commit_and_each_verifies_alone() {
        let sealers = Arc::new(Sealers::new(TYP_ENVELOPE, slow_commit));
        let s = Arc::new(signer("lg:131059"));
        let peer = org("ot:npo-komorebi");
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let (sealers, s, peer) = (sealers.clone(), s.clone(), peer.clone());
                tokio::spawn(
                    async move { sealers.seal(&peer, i.to_be_bytes().to_vec(), s, i).await },
                )
            })
            .collect();
        let mut sizes = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let outcome = t.await.unwrap();
            if i == 13 {
                assert_eq!(outcome, Err(Refused));
                continue;
            }
            let bytes = outcome.unwrap();
            // Envelope heads name the signer's chain by fingerprint only.
            assert!(matches!(
                batch::open(
                    &bytes,
                    TYP_ENVELOPE,
                    "envelope",
                    &chains(),
                    Timestamp(0),
                    &Limits::default(),
                ),
                Err(tsunagi_protocol::cose::CoseError::ChainNotHeld { .. })
            ));
            let opened = batch::open_resolving(
                &bytes,
                TYP_ENVELOPE,
                "envelope",
                &chains(),
                Timestamp(0),
                &Limits::default(),
                None,
                &|kid| (*kid == s.kid()).then(|| s.x5chain().to_vec()),
            )
            .unwrap();
            assert_eq!(opened.body, (i as u32).to_be_bytes().to_vec());
            assert_eq!(opened.signer.org.as_str(), "lg:131059");
            sizes.push(opened.head.size);
        }
        // Bodies that arrived while a group waited for its commit were sealed together.
        assert!(sizes.iter().any(|&n| n > 1), "no batch formed: {sizes:?}");
    }

    #[tokio::test]
    async fn a_lone_body_is_a_batch_of_one() {
        let sealers = Sealers::new(TYP_ENVELOPE, slow_commit);
        let bytes = sealers
            .seal(
                &org("ot:npo-komorebi"),
                b"alone".to_vec(),
                Arc::new(signer("lg:131059")),
                0,
            )
            .await
            .unwrap();
        let s = batch::Sealed::parse(&bytes, "envelope", &Limits::default()).unwrap();
        assert!(s.path.is_empty() && s.index == 0);
    }
}
