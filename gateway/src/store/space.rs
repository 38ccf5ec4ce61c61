//! [`SpaceFloor`]: new work is refused while the data directory's disk is nearly full.
//!
//! A full disk fails writes midway; sled cannot write again until it is reopened (see
//! [`Store::health`](super::Store::health)), so the gateway would have to stop. Refusing new
//! submissions and new incoming envelopes while free space is below a floor keeps that space for
//! the work already taken on (delivery states, receipts, audit records) and keeps the gateway up:
//! submitters get an error, peers get no receipt and retry later. The free space is read with
//! `statvfs` (through `fs2`, already a dependency of sled). That call costs about as much as
//! the store write of a small record, so a check within [`RECHECK_AFTER`] of a reading that was
//! more than [`HEADROOM`] above the floor trusts that reading: in that time the gateway cannot
//! write anywhere near that much. Near the floor, every check reads the disk again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StoreError;

/// How often a warning is logged while the free space stays below the floor.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How long a reading far above the floor is trusted (see the [module docs](self)).
pub const RECHECK_AFTER: Duration = Duration::from_millis(100);

/// How far above the floor a reading must be to be trusted for [`RECHECK_AFTER`]: more than
/// the gateway can write in that time (at 10,000 envelopes per second of 7 KiB on both sides,
/// about 7 MiB).
pub const HEADROOM: u64 = 64 << 20;

/// The free-space floor of a data directory.
#[derive(Debug)]
pub struct SpaceFloor {
    dir: PathBuf,
    min: u64,
    /// When the last warning was logged, while below the floor; `None` above it.
    warned: Mutex<Option<Instant>>,
    /// When the free space was last read as more than [`HEADROOM`] above the floor.
    roomy_at: Mutex<Option<Instant>>,
}

impl SpaceFloor {
    /// Refuse new work while fewer than `min` bytes are free under `dir` (0 never refuses).
    pub fn new(dir: &Path, min: u64) -> Self {
        SpaceFloor {
            dir: dir.to_path_buf(),
            min,
            warned: Mutex::new(None),
            roomy_at: Mutex::new(None),
        }
    }

    /// Bytes available to unprivileged writers on `dir`'s file system.
    pub fn free(&self) -> Result<u64, StoreError> {
        fs2::available_space(&self.dir).map_err(|e| StoreError::io(&self.dir, &e))
    }

    /// `Err(`[`StoreError::LowSpace`]`)` while the free space is below the floor. Logs a
    /// warning when the space drops below it (then every minute while it stays there), and a
    /// notice when it is back. A failed `statvfs` does not refuse anything (the writes
    /// themselves will tell).
    pub fn check(&self) -> Result<(), StoreError> {
        if self.min == 0 {
            return Ok(());
        }
        {
            let roomy_at = self.roomy_at.lock().unwrap_or_else(|e| e.into_inner());
            if roomy_at.is_some_and(|at| at.elapsed() < RECHECK_AFTER) {
                return Ok(());
            }
        }
        let free = match self.free() {
            Ok(free) => free,
            Err(e) => {
                tracing::debug!("cannot read the free space: {e}");
                return Ok(());
            }
        };
        *self.roomy_at.lock().unwrap_or_else(|e| e.into_inner()) =
            (free.saturating_sub(HEADROOM) >= self.min).then(Instant::now);
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if free >= self.min {
            if warned.take().is_some() {
                tracing::warn!(
                    free,
                    min_free_bytes = self.min,
                    "the disk of the data directory {} has space again: new work is accepted",
                    self.dir.display()
                );
            }
            return Ok(());
        }
        let e = StoreError::LowSpace {
            dir: self.dir.clone(),
            free,
            min: self.min,
        };
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(free, min_free_bytes = self.min, "DISK NEARLY FULL: {e}");
            *warned = Some(Instant::now());
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_refuses_and_zero_never_does() {
        let dir = std::env::temp_dir();
        let floor = SpaceFloor::new(&dir, 0);
        floor.check().unwrap();
        let free = floor.free().unwrap();
        assert!(free > 0);
        let floor = SpaceFloor::new(&dir, u64::MAX);
        let e = floor.check().unwrap_err();
        assert!(matches!(e, StoreError::LowSpace { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("min_free_bytes"), "{msg}");
        assert!(msg.ends_with("nothing was acknowledged"), "{msg}");
        SpaceFloor::new(&dir, 1).check().unwrap();
    }

    #[test]
    fn a_roomy_reading_is_trusted_briefly_and_one_near_the_floor_never() {
        let dir = std::env::temp_dir();
        let free = SpaceFloor::new(&dir, 0).free().unwrap();
        if free < 4 * HEADROOM {
            eprintln!("skipped: {free} bytes free under {}", dir.display());
            return;
        }
        // Far above the floor: the reading is kept.
        let roomy = SpaceFloor::new(&dir, 1);
        roomy.check().unwrap();
        let kept = *roomy.roomy_at.lock().unwrap();
        assert!(kept.is_some());
        roomy.check().unwrap();
        assert_eq!(*roomy.roomy_at.lock().unwrap(), kept, "read the disk again");
        // Within the headroom of the floor: nothing is kept, so each check reads the disk.
        let near = SpaceFloor::new(&dir, free - HEADROOM / 2);
        near.check().unwrap();
        assert!(near.roomy_at.lock().unwrap().is_none());
        // Below it: refused every time.
        let below = SpaceFloor::new(&dir, u64::MAX);
        assert!(below.check().is_err());
        assert!(below.check().is_err());
        assert!(below.roomy_at.lock().unwrap().is_none());
    }
}
