//! Randomness, passed in by the caller.
//!
//! Salts, document ids, digest ids and message ids must come from a CSPRNG. The protocol takes an
//! [`Entropy`] parameter instead of reaching for one, so tests and test vectors can supply fixed
//! bytes ([`FixedEntropy`]) while gateways use [`SystemEntropy`] (ring's `SystemRandom`).

/// A source of random bytes.
pub trait Entropy {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);

    /// A random `u32`.
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_be_bytes(b)
    }
}

/// How many bytes [`SystemEntropy`] draws from the operating system at a time.
const DRAW: usize = 512;

/// The operating system's CSPRNG through ring, drawn [`DRAW`] bytes at a time.
///
/// Signing a document takes a few dozen small pieces (digest ids, their order, a salt per
/// element, decoys): one system call each cost about 3 % of the gateway's CPU under load.
/// Each drawn byte is zeroed in the buffer as it is handed out, and the rest when the value is
/// dropped, so a short-lived instance (one per signature) keeps none of them after use.
/// Requests larger than half a draw go to the system directly.
pub struct SystemEntropy {
    rng: ring::rand::SystemRandom,
    drawn: [u8; DRAW],
    /// The first byte of `drawn` not yet handed out (`DRAW`: none left).
    next: usize,
}

impl std::fmt::Debug for SystemEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemEntropy")
            .field("left", &(DRAW - self.next))
            .finish_non_exhaustive()
    }
}

impl SystemEntropy {
    /// A new handle to the system CSPRNG.
    pub fn new() -> Self {
        Self {
            rng: ring::rand::SystemRandom::new(),
            drawn: [0; DRAW],
            next: DRAW,
        }
    }

    fn system_fill(&self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        // ring's SystemRandom only fails if the OS has no entropy source at all; a gateway must
        // not continue without one.
        self.rng
            .fill(buf)
            .expect("the operating system's random number generator failed");
    }
}

impl Default for SystemEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl Entropy for SystemEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        if buf.len() > DRAW / 2 {
            return self.system_fill(buf);
        }
        if DRAW - self.next < buf.len() {
            let mut drawn = [0u8; DRAW];
            self.system_fill(&mut drawn);
            self.drawn = drawn;
            self.next = 0;
        }
        let end = self.next + buf.len();
        buf.copy_from_slice(&self.drawn[self.next..end]);
        self.drawn[self.next..end].fill(0);
        self.next = end;
    }
}

impl Drop for SystemEntropy {
    fn drop(&mut self) {
        self.drawn.fill(0);
        std::hint::black_box(&self.drawn);
    }
}

/// Deterministic bytes for tests and test vectors: SHA-256 in counter mode over a seed.
/// Never use it to make real documents.
#[derive(Debug, Clone)]
pub struct FixedEntropy {
    seed: Vec<u8>,
    counter: u64,
}

impl FixedEntropy {
    /// A stream determined by `seed`.
    pub fn new(seed: &[u8]) -> Self {
        Self {
            seed: seed.to_vec(),
            counter: 0,
        }
    }
}

impl Entropy for FixedEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(32) {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(&self.seed);
            ctx.update(&self.counter.to_be_bytes());
            self.counter += 1;
            let d = ctx.finish();
            chunk.copy_from_slice(&d.as_ref()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_entropy_hands_out_each_drawn_byte_once_and_zeroes_it() {
        let mut rng = SystemEntropy::new();
        let mut seen = Vec::new();
        // Small requests across several draws, then one larger than half a draw.
        for n in [
            1usize, 4, 16, 32, 7, 100, 3, 64, 200, 250, 180, 90, 240, 300,
        ] {
            let mut b = vec![0u8; n];
            rng.fill(&mut b);
            seen.extend_from_slice(&b);
            if n <= DRAW / 2 {
                assert!(
                    rng.drawn[..rng.next].iter().all(|&x| x == 0),
                    "a handed-out byte was kept"
                );
            }
        }
        // 1,487 random bytes are not all zero, and 16-byte pieces of them do not repeat.
        assert!(seen.iter().any(|&x| x != 0));
        let mut pieces: Vec<&[u8]> = seen.chunks_exact(16).collect();
        pieces.sort();
        pieces.dedup();
        assert_eq!(pieces.len(), seen.len() / 16);
    }
}
