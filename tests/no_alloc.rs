//! The hot path does not touch the heap: a counting global allocator proves that, once
//! a ring is open and a reused buffer is large enough,
//! - `push` (of any size up to the maximum, including the wrap with padding, and a
//!   push refused with `Full`) makes no allocation;
//! - `pop_into` makes none, whether it returns an entry or finds the ring empty;
//! - `pop` makes exactly one per returned non-empty entry (the payload it hands over)
//!   and none on an empty ring.
//!
//! Only allocations made by the test's own thread while counting is switched on are
//! counted, so the test harness's threads can't disturb the numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mmring::{OnFull, Options, Ring};

/// The system allocator, counting the calls of threads that switched counting on.
struct Counting;

thread_local! {
    /// `Some(n)`: counting, `n` allocations so far. Const-initialized, so reading it
    /// never allocates.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn bump() {
    // try_with: the slot may be gone while a thread is being torn down.
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; counting touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: delegated to the caller (a valid, non-zero-sized layout).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: delegated to the caller.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: delegated to the caller (ptr came from this allocator with layout).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: delegated to the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    COUNT.with(|c| c.set(Some(0)));
    let result = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (n, result)
}

fn ring(dir: &tempfile::TempDir, on_full: OnFull) -> Ring {
    Options::new()
        .size(64 * 1024 + 4096)
        .on_full(on_full)
        .create(dir.path().join("r"))
        .expect("create")
}

#[test]
fn push_and_pop_into_make_no_allocation_across_many_laps() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, OnFull::Reject);
    let max = ring.max_entry_size();
    let payloads: Vec<Vec<u8>> = [0, 1, 64, 1000, 4096, max]
        .iter()
        .map(|&n| vec![0xa5; n])
        .collect();
    let mut buf = Vec::with_capacity(max);
    let (n, moved) = allocations(|| {
        let mut moved = 0u64;
        // Sizes cycle, so lap ends fall at varying offsets and padding records occur.
        for round in 0..200 {
            let data = &payloads[round % payloads.len()];
            ring.push(data).expect("push");
            let info = ring.pop_into(&mut buf).expect("pop").expect("an entry");
            assert_eq!(info.len(), data.len());
            moved += data.len() as u64;
        }
        moved
    });
    assert_eq!(n, 0, "allocations in 200 push + pop_into pairs");
    assert!(
        moved > 3 * ring.capacity_bytes(),
        "the loop wrapped the ring several times"
    );
}

#[test]
fn push_batch_and_pop_batch_make_no_allocation_once_the_batch_has_grown() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, OnFull::Reject);
    let payloads: Vec<Vec<u8>> = (0..32).map(|i| vec![0x5a; 40 + 37 * i]).collect();
    // The batch's buffers grow to the largest batch once, outside the count.
    let mut batch = mmring::Batch::with_capacity(32, payloads.iter().map(Vec::len).sum());
    let (n, moved) = allocations(|| {
        let mut moved = 0u64;
        // Batch sizes cycle from 1 to 32, so lap ends fall inside batches.
        for round in 0..400 {
            let entries = &payloads[..round % 32 + 1];
            assert_eq!(ring.push_batch(entries).expect("push_batch"), entries.len());
            let mut got = 0;
            while got < entries.len() {
                got += ring.pop_batch(&mut batch, 32).expect("pop_batch");
                moved += batch.iter().map(|(_, data)| data.len() as u64).sum::<u64>();
            }
        }
        moved
    });
    assert_eq!(n, 0, "allocations in 400 push_batch + pop_batch rounds");
    assert!(
        moved > 3 * ring.capacity_bytes(),
        "the loop wrapped the ring several times"
    );
}

#[test]
fn empty_pop_and_full_push_make_no_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, OnFull::Reject);
    let mut buf = Vec::with_capacity(64);
    let (n, _) = allocations(|| {
        for _ in 0..100 {
            assert!(ring.pop_into(&mut buf).unwrap().is_none());
            assert!(ring.pop().unwrap().is_none());
        }
    });
    assert_eq!(n, 0, "allocations in pops of an empty ring");
    while ring.push(&[1; 64]).is_ok() {}
    let (n, _) = allocations(|| {
        for _ in 0..100 {
            assert!(matches!(ring.push(&[1; 64]), Err(mmring::Error::Full)));
        }
    });
    assert_eq!(n, 0, "allocations in pushes refused as Full");
}

#[test]
fn overwriting_push_makes_no_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, OnFull::Overwrite);
    let (n, _) = allocations(|| {
        for i in 0..10_000u32 {
            ring.push(&i.to_le_bytes().repeat(16)).expect("push");
        }
    });
    // repeat() allocates the payload: one per iteration, none inside push.
    assert_eq!(n, 10_000, "allocations beyond the payloads themselves");
    assert!(ring.stats().evicted > 0, "pushes evicted entries");
}

#[test]
fn pop_allocates_only_the_returned_payload() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, OnFull::Reject);
    for _ in 0..50 {
        ring.push(&[7; 100]).unwrap();
    }
    let (n, _) = allocations(|| {
        for _ in 0..50 {
            let entry = ring.pop().unwrap().expect("an entry");
            assert_eq!(entry.data(), &[7; 100][..]);
        }
    });
    assert_eq!(n, 50, "one allocation per popped entry, for its payload");
}
