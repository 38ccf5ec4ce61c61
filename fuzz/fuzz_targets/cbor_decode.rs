//! The strict decoder accepts only canonical encodings, so whatever it accepts must re-encode to
//! exactly the input bytes. And what it costs is bounded by the input: the heap it uses while
//! decoding any bytes, accepted or not, grows at most linearly with their length.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use tsunagi_protocol::cbor::{decode, encode, Limits};

/// The system allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most heap decoding `len` bytes may take: a decoded item is at most a few 32-byte values
/// per input byte, plus a small fixed allowance for per-container preallocation.
fn heap_budget(len: usize) -> usize {
    128 * len + 128 * 1024
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let decoded = decode(data, &limits);
    let used = PEAK.load(Relaxed) - before;
    assert!(
        used <= heap_budget(data.len()),
        "decoding {} bytes took {used} bytes of heap ({:?})",
        data.len(),
        decoded.as_ref().map(|_| ())
    );
    if let Ok(value) = decoded {
        assert!(
            encode(&value) == data,
            "decode accepted a non-canonical encoding: {value:?}"
        );
        // Decoding is a function of the bytes: once more gives the same value.
        assert_eq!(decode(data, &limits).as_ref(), Ok(&value));
    }
    // A smaller depth limit only ever refuses more; it never panics.
    let shallow = Limits {
        max_depth: 2,
        ..limits
    };
    if let Ok(value) = decode(data, &shallow) {
        assert!(encode(&value) == data);
        assert!(decode(data, &limits).is_ok(), "accepted at depth 2 only");
    }
    // So does a smaller item limit.
    let few = Limits {
        max_items: 16,
        ..limits
    };
    if let Ok(value) = decode(data, &few) {
        assert!(encode(&value) == data);
        assert!(decode(data, &limits).is_ok(), "accepted at 16 items only");
    }
});
