//! Batch seals: one gateway signature over a Merkle tree of many envelopes (or receipts).
//!
//! A gateway seals everything ready for one peer at once: it hashes each body into a leaf of a
//! Merkle tree built as in RFC 9162 §2.1.1 (Certificate Transparency v2, the construction
//! draft-davidben-tls-batch-signing also uses), signs the root once in a **batch head** (a
//! COSE_Sign1 of type [`TYP_BATCH`] whose payload names the type of the leaves, the number of
//! leaves and the root), and gives each body its own inclusion path. The result for each body,
//! a [`Sealed`] structure, verifies on its own — head signature and chain, then the path from the
//! body's leaf to the signed root — so an envelope or a receipt stays evidence forever without
//! the rest of its batch. A batch of one is a tree of one leaf and an empty path.
//!
//! Hashes are domain-separated (RFC 9162): a leaf is `SHA-256(0x00 ‖ body)`, an inner node
//! `SHA-256(0x01 ‖ left ‖ right)`, so a leaf can never pass for a node. The head's `typ` keeps
//! a receipt batch from passing for an envelope batch. Nothing here waits for a batch to fill:
//! the caller seals what is ready.
//!
//! A head either carries its signer's certificate chain (`x5chain`, [`seal`]) or names it by
//! fingerprint only — its `kid`, which the signature covers ([`seal_by_kid`]): gateways seal
//! envelopes and receipts that way, and the verifier supplies the chain it keeps for that fingerprint
//! ([`open_resolving`]; [`CoseError::ChainNotHeld`] when it has none, see [`crate::fetch`]).
//! The chain is validated the same way in both cases.

use crate::cbor::{self, map, uint, CborError, Limits, MapReader, Value};
use crate::cose::{ChainVerifier, CoseError, Sign1, Signer, SignerIdentity, TYP_BATCH};
use crate::date::Timestamp;

/// The most leaves one batch may have; also bounds an inclusion path to 16 hashes.
pub const MAX_BATCH: usize = 1 << 16;

/// `SHA-256(0x00 ‖ data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an inner node.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The tree over `leaves` (leaf hashes), level by level from the leaves up. A level of odd
/// length promotes its last node unchanged, which yields exactly RFC 9162's tree (the left
/// subtree of `n` leaves holds the largest power of two below `n`).
fn levels(leaves: &[[u8; 32]]) -> Vec<Vec<[u8; 32]>> {
    let mut levels = vec![leaves.to_vec()];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = levels.last().expect("non-empty");
        let up = below
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node_hash(l, r),
                [one] => *one,
                _ => unreachable!("chunks(2)"),
            })
            .collect();
        levels.push(up);
    }
    levels
}

/// The root of the tree over `leaves` (`None` for no leaves).
pub fn root(leaves: &[[u8; 32]]) -> Option<[u8; 32]> {
    levels(leaves).last().and_then(|l| l.first()).copied()
}

/// The inclusion path of leaf `index`, from the leaf's sibling up (RFC 9162 §2.1.3.1).
fn path_in(levels: &[Vec<[u8; 32]>], mut index: usize) -> Vec<[u8; 32]> {
    let mut path = Vec::new();
    for level in &levels[..levels.len().saturating_sub(1)] {
        let sibling = index ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        index >>= 1;
    }
    path
}

/// The inclusion path of leaf `index` among `leaves`.
pub fn inclusion_path(leaves: &[[u8; 32]], index: usize) -> Vec<[u8; 32]> {
    path_in(&levels(leaves), index)
}

/// The root that `path` leads to from `leaf` at `index` in a tree of `size` leaves (RFC 9162
/// §2.1.3.2), or `None` when the path cannot belong to such a tree (wrong length, index out of
/// range).
pub fn root_from_path(
    leaf: [u8; 32],
    index: u64,
    size: u64,
    path: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// The signed statement of one batch (the head's payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHead {
    /// The `typ` of every leaf body (e.g. [`crate::cose::TYP_ENVELOPE`]).
    pub typ: String,
    /// Number of leaves.
    pub size: u64,
    /// The Merkle root.
    pub root: [u8; 32],
}

impl BatchHead {
    fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(&map([
            ("typ", Value::Text(self.typ.clone())),
            ("size", uint(self.size)),
            ("root", Value::Bytes(self.root.to_vec())),
        ]))
    }

    fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, CborError> {
        let mut r = MapReader::new(cbor::decode(bytes, limits)?, "batch head")?;
        let head = Self {
            typ: r.text("typ")?,
            size: r.u64("size")?,
            root: r.byte_array::<32>("root")?,
        };
        r.finish()?;
        Ok(head)
    }
}

/// One body with the proof that it belongs to a signed batch, as transmitted:
/// `[head, index, path, body]` (see `protocol/wire.cddl`, `BatchSealed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The batch head: COSE_Sign1 bytes of type [`TYP_BATCH`] over a [`BatchHead`].
    pub head: Vec<u8>,
    /// The body's leaf index.
    pub index: u64,
    /// Sibling hashes from the leaf up.
    pub path: Vec<[u8; 32]>,
    /// The body (an encoded envelope or receipt body), exactly as hashed into the leaf.
    pub body: Vec<u8>,
}

impl Sealed {
    /// The transmitted bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(&Value::Array(vec![
            Value::Bytes(self.head.clone()),
            uint(self.index),
            Value::Array(self.path.iter().map(|h| Value::Bytes(h.to_vec())).collect()),
            Value::Bytes(self.body.clone()),
        ]))
    }

    /// Parses `bytes` strictly without verifying anything.
    pub fn parse(bytes: &[u8], what: &'static str, limits: &Limits) -> Result<Self, CoseError> {
        let bad = |detail: &str| CoseError::Malformed {
            what,
            detail: format!("batch seal: {detail}"),
        };
        let v = cbor::decode(bytes, limits).map_err(|source| CoseError::Cbor { what, source })?;
        let Value::Array(items) = v else {
            return Err(bad("expected an array [head, index, path, body]"));
        };
        let [Value::Bytes(head), index, Value::Array(path), Value::Bytes(body)]: [Value; 4] = items
            .try_into()
            .map_err(|_| bad("expected an array [head, index, path, body]"))?
        else {
            return Err(bad("expected [bytes, uint, [* bytes], bytes]"));
        };
        let index = cbor::as_u64(&index, "batch seal index")
            .map_err(|source| CoseError::Cbor { what, source })?;
        if path.len() > 16 {
            return Err(bad("an inclusion path has at most 16 hashes"));
        }
        let path = path
            .into_iter()
            .map(|h| match h {
                Value::Bytes(b) => b.try_into().map_err(|_| bad("each path hash is 32 bytes")),
                _ => Err(bad("each path hash is 32 bytes")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            head,
            index,
            path,
            body,
        })
    }
}

/// A verified [`Sealed`]: who signed its batch, and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The batch signer.
    pub signer: SignerIdentity,
    /// The verified head.
    pub head: BatchHead,
    /// The body, exactly as received.
    pub body: Vec<u8>,
}

/// Seals `bodies` (all of type `typ`) with one signature; returns each body's [`Sealed`] bytes,
/// in order. An empty slice gives nothing and signs nothing.
pub fn seal(signer: &Signer, typ: &str, bodies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    seal_inner(signer, typ, bodies, true)
}

/// As [`seal`], the head naming the signer's certificate chain by its fingerprint only
/// ([`Signer::sign_by_kid`]): the receiver resolves it from the chains it holds, or fetches it
/// ([`crate::fetch::chain_fetch`]). What gateways send envelopes in.
pub fn seal_by_kid(signer: &Signer, typ: &str, bodies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    seal_inner(signer, typ, bodies, false)
}

fn seal_inner(signer: &Signer, typ: &str, bodies: &[Vec<u8>], with_chain: bool) -> Vec<Vec<u8>> {
    if bodies.is_empty() {
        return Vec::new();
    }
    assert!(
        bodies.len() <= MAX_BATCH,
        "a batch holds at most {MAX_BATCH}"
    );
    let leaves: Vec<[u8; 32]> = bodies.iter().map(|b| leaf_hash(b)).collect();
    let tree = levels(&leaves);
    let head = BatchHead {
        typ: typ.to_owned(),
        size: bodies.len() as u64,
        root: tree.last().expect("non-empty")[0],
    };
    let head = if with_chain {
        signer.sign(TYP_BATCH, head.to_bytes())
    } else {
        signer.sign_by_kid(TYP_BATCH, head.to_bytes())
    };
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            Sealed {
                head: head.clone(),
                index: i as u64,
                path: path_in(&tree, i),
                body: body.clone(),
            }
            .to_bytes()
        })
        .collect()
}

/// Batch heads whose signature verified, by the SHA-256 of their bytes: the bodies of one
/// batch then cost one signature verification together, not one each. Only the signature is
/// remembered; the signer's chain is checked at every use. Bounded: emptied when full.
#[derive(Debug, Default)]
pub struct HeadCache {
    verified: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
}

impl HeadCache {
    /// How many heads it remembers before it starts again.
    pub const CAPACITY: usize = 4096;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn knows(&self, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(digest)
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut v = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if v.len() >= Self::CAPACITY {
            v.clear();
        }
        v.insert(digest);
    }
}

/// Verifies `bytes` as one sealed body of type `typ`: the head's signature and chain at `now`,
/// its `typ`, and the inclusion path from the body's leaf to the signed root.
pub fn open(
    bytes: &[u8],
    typ: &'static str,
    what: &'static str,
    chains: &dyn ChainVerifier,
    now: Timestamp,
    limits: &Limits,
) -> Result<Opened, CoseError> {
    open_with(bytes, typ, what, chains, now, limits, None)
}

/// As [`open`]; a head whose signature `heads` already verified is not verified again (its
/// chain still is).
pub fn open_with(
    bytes: &[u8],
    typ: &'static str,
    what: &'static str,
    chains: &dyn ChainVerifier,
    now: Timestamp,
    limits: &Limits,
    heads: Option<&HeadCache>,
) -> Result<Opened, CoseError> {
    open_resolving(bytes, typ, what, chains, now, limits, heads, &|_| None)
}

/// A certificate chain (leaf first) by the fingerprint of its leaf, when the verifier holds it.
pub type KnownChains<'a> = dyn Fn(&[u8; 32]) -> Option<Vec<Vec<u8>>> + 'a;

/// As [`open_with`]; a head that names its signer's chain by fingerprint only ([`seal_by_kid`])
/// is verified with the chain `known` gives for that `kid` — [`CoseError::ChainNotHeld`] when
/// it gives none.
#[allow(clippy::too_many_arguments)]
pub fn open_resolving(
    bytes: &[u8],
    typ: &'static str,
    what: &'static str,
    chains: &dyn ChainVerifier,
    now: Timestamp,
    limits: &Limits,
    heads: Option<&HeadCache>,
    known: &KnownChains<'_>,
) -> Result<Opened, CoseError> {
    let sealed = Sealed::parse(bytes, what, limits)?;
    let mut s = Sign1::parse(&sealed.head, what, limits)?;
    if s.x5chain.is_empty() {
        let kid: [u8; 32] = s
            .kid
            .as_slice()
            .try_into()
            .map_err(|_| CoseError::KidMismatch { what })?;
        s.x5chain = known(&kid).ok_or(CoseError::ChainNotHeld { what, kid })?;
    }
    let signer = match heads {
        None => s.verify(TYP_BATCH, what, chains, now)?,
        Some(cache) => {
            let digest = crate::cose::sha256(&sealed.head);
            if cache.knows(&digest) {
                s.verify_chain(TYP_BATCH, what, chains, now)?
            } else {
                let signer = s.verify(TYP_BATCH, what, chains, now)?;
                cache.remember(digest);
                signer
            }
        }
    };
    let head = BatchHead::from_bytes(&s.payload, limits)
        .map_err(|source| CoseError::Cbor { what, source })?;
    if head.typ != typ {
        return Err(CoseError::WrongType {
            what,
            expected: typ,
            found: head.typ,
        });
    }
    match root_from_path(
        leaf_hash(&sealed.body),
        sealed.index,
        head.size,
        &sealed.path,
    ) {
        Some(r) if r == head.root => Ok(Opened {
            signer,
            head,
            body: sealed.body,
        }),
        _ => Err(CoseError::Inclusion { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cose::{sha256, TYP_ENVELOPE};
    use crate::testkit::{chains, signer};

    /// RFC 9162's recursive definition, to check the level-by-level construction against.
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = leaves.len().next_power_of_two() / 2;
        node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_path_of_every_size_leads_to_the_rfc_9162_root() {
        for n in 1..=70 {
            let l = leaves(n);
            let r = root(&l).unwrap();
            assert_eq!(r, mth(&l), "root of {n}");
            for i in 0..n {
                let p = inclusion_path(&l, i);
                assert_eq!(root_from_path(l[i], i as u64, n as u64, &p), Some(r));
                // Another index or a shortened path does not lead there. (The size is signed in the head:
                // a leaf may have the same path in trees of different sizes.)
                if n > 1 {
                    let j = (i + 1) % n;
                    assert_ne!(root_from_path(l[i], j as u64, n as u64, &p), Some(r));
                }
                if !p.is_empty() {
                    assert_ne!(
                        root_from_path(l[i], i as u64, n as u64, &p[..p.len() - 1]),
                        Some(r)
                    );
                }
            }
        }
        assert_eq!(root(&[]), None);
        assert_eq!(root_from_path([0; 32], 3, 3, &[]), None);
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut joined = vec![];
        joined.extend_from_slice(&a);
        joined.extend_from_slice(&b);
        assert_ne!(leaf_hash(&joined), node_hash(&a, &b));
        assert_eq!(leaf_hash(b"")[..4], sha256(&[0])[..4]);
    }

    fn batch(n: usize) -> Vec<Vec<u8>> {
        let bodies: Vec<Vec<u8>> = (0..n).map(|i| format!("body {i}").into_bytes()).collect();
        seal(&signer("lg:131059"), TYP_ENVELOPE, &bodies)
    }

    fn open_env(b: &[u8]) -> Result<Opened, CoseError> {
        open(
            b,
            TYP_ENVELOPE,
            "envelope",
            &chains(),
            Timestamp(0),
            &Limits::default(),
        )
    }

    #[test]
    fn each_sealed_body_verifies_on_its_own() {
        for n in [1, 2, 3, 7, 64] {
            for (i, b) in batch(n).iter().enumerate() {
                let o = open_env(b).unwrap();
                assert_eq!(o.body, format!("body {i}").into_bytes());
                assert_eq!(o.head.size, n as u64);
                assert_eq!(o.signer.org.as_str(), "lg:131059");
            }
        }
    }

    #[test]
    fn a_tampered_body_path_index_or_root_is_refused() {
        let sealed = batch(5);
        let good = Sealed::parse(&sealed[2], "envelope", &Limits::default()).unwrap();
        let inclusion =
            |s: &Sealed| matches!(open_env(&s.to_bytes()), Err(CoseError::Inclusion { .. }));
        let mut s = good.clone();
        s.body.push(0);
        assert!(inclusion(&s), "altered body");
        let mut s = good.clone();
        s.path[0][0] ^= 1;
        assert!(inclusion(&s), "altered path");
        let mut s = good.clone();
        s.index = 3;
        assert!(inclusion(&s), "other index");
        let mut s = good.clone();
        s.path.pop();
        assert!(inclusion(&s), "short path");
        // Another batch's head: the root differs.
        let mut s = good.clone();
        s.head = {
            let other: Vec<Vec<u8>> = (0..5).map(|i| vec![i]).collect();
            Sealed::parse(
                &seal(&signer("lg:131059"), TYP_ENVELOPE, &other)[2],
                "envelope",
                &Limits::default(),
            )
            .unwrap()
            .head
        };
        assert!(inclusion(&s), "other batch's head");
        // A flipped byte in the signed root breaks the head's signature. The head ends with
        // the root (32 bytes), "size" and its value (6 bytes), then the signature (66 bytes).
        let mut s = good.clone();
        let n = s.head.len();
        s.head[n - 66 - 6 - 5] ^= 1;
        assert!(matches!(
            open_env(&s.to_bytes()),
            Err(CoseError::BadSignature { .. })
        ));
        // A receipt batch does not pass for an envelope batch.
        let r = seal(
            &signer("lg:131059"),
            crate::cose::TYP_RECEIPT,
            &[b"x".to_vec()],
        );
        assert!(matches!(open_env(&r[0]), Err(CoseError::WrongType { .. })));
        assert!(open_env(&good.to_bytes()).is_ok());
    }

    #[test]
    fn a_cached_head_skips_only_the_signature() {
        let cache = HeadCache::new();
        let sealed = batch(3);
        let open_cached = |b: &[u8], chains: &crate::cose::StaticChains| {
            open_with(
                b,
                TYP_ENVELOPE,
                "envelope",
                chains,
                Timestamp(0),
                &Limits::default(),
                Some(&cache),
            )
        };
        for b in &sealed {
            assert!(open_cached(b, &chains()).is_ok());
        }
        // The path is still checked for a known head …
        let mut s = Sealed::parse(&sealed[1], "envelope", &Limits::default()).unwrap();
        s.body.push(0);
        assert!(matches!(
            open_cached(&s.to_bytes(), &chains()),
            Err(CoseError::Inclusion { .. })
        ));
        // … and so is the chain: a verifier that no longer trusts the signer refuses it.
        assert!(matches!(
            open_cached(&sealed[0], &crate::cose::StaticChains::new()),
            Err(CoseError::Chain { .. })
        ));
    }

    #[test]
    fn malformed_seals_are_refused_with_a_reason() {
        for bad in [
            cbor::encode(&Value::Array(vec![])),
            cbor::encode(&uint(1)),
            cbor::encode(&Value::Array(vec![
                Value::Bytes(vec![]),
                uint(0),
                Value::Array(vec![Value::Bytes(vec![0; 31])]),
                Value::Bytes(vec![]),
            ])),
        ] {
            assert!(matches!(
                Sealed::parse(&bad, "envelope", &Limits::default()),
                Err(CoseError::Malformed { .. })
            ));
        }
    }
}
