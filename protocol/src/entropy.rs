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

/// The operating system's CSPRNG through ring.
#[derive(Debug)]
pub struct SystemEntropy(ring::rand::SystemRandom);

impl SystemEntropy {
    /// A new handle to the system CSPRNG.
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl Entropy for SystemEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        // ring's SystemRandom only fails if the OS has no entropy source at all; a gateway must
        // not continue without one.
        self.0
            .fill(buf)
            .expect("the operating system's random number generator failed");
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
