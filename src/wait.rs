//! Sleeping until the ring changes, across processes, and waking the sleepers.
//!
//! The protocol uses two 32-bit words in the ring header: the futex word `notify`,
//! which every wake bumps, and `waiters`, the number of threads (in any process)
//! registered as sleeping or about to sleep. A change (an entry committed, space
//! freed in block mode) wakes sleepers only when `waiters` is not zero, so the hot
//! path makes no system call when nobody waits. docs/DESIGN.md ("Waiting") argues why
//! no wake-up is lost.
//!
//! The sleeping itself is behind [`Futex`], so the loom models replace the kernel's
//! futex with a mutex and a condition variable (`LoomFutex`) and check the protocol.

use std::time::{Duration, Instant};

use crate::Result;
use crate::sync::{AtomicU32, Ordering, fence};

/// Longest single sleep. Some changes come with no wake-up: a producer that died
/// before committing (its record is abandoned only by a reader that looks again after
/// the abandon timeout), an entry expiring, a damaged record. A sleeper looks again at
/// least this often, so they cost it latency, never a hang.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Sleeping on a 32-bit word in memory shared between processes.
pub(crate) trait Futex: Send + Sync {
    /// Sleeps while `word` holds `expected`, for at most `timeout`. Returns at once
    /// if the word holds another value; may also return early for any other reason.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration);
    /// Wakes every thread sleeping on `word`, in every process.
    fn wake_all(&self, word: &AtomicU32);
}

/// The kernel's futex on the mapped word: `FUTEX_WAIT`/`FUTEX_WAKE` *without*
/// `FUTEX_PRIVATE_FLAG`, so the kernel keys the wait on the file page and a wake in
/// one process reaches sleepers in every process that maps the ring.
#[cfg(not(loom))]
pub(crate) struct SystemFutex;

#[cfg(not(loom))]
impl Futex for SystemFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
        use rustix::thread::futex;
        let timeout = futex::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // Every outcome means "look again": woken, EAGAIN (the word had already
        // changed), EINTR (a signal), ETIMEDOUT.
        let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&timeout));
    }

    fn wake_all(&self, word: &AtomicU32) {
        use rustix::thread::futex;
        // The only failure is EFAULT on a bad address, which the mapping rules out.
        let _ = futex::wake(word, futex::Flags::empty(), i32::MAX.unsigned_abs());
    }
}

/// A futex modelled with loom's mutex and condition variable, for the loom models.
/// Like the kernel, it compares the word and enqueues the sleeper atomically with
/// respect to wakers (the mutex plays the futex hash bucket's lock). It never times
/// out: a lost wake-up leaves the model deadlocked, which loom reports.
#[cfg(loom)]
pub(crate) struct LoomFutex {
    lock: loom::sync::Mutex<()>,
    sleepers: loom::sync::Condvar,
}

#[cfg(loom)]
impl LoomFutex {
    pub(crate) fn new() -> LoomFutex {
        LoomFutex {
            lock: loom::sync::Mutex::new(()),
            sleepers: loom::sync::Condvar::new(),
        }
    }
}

#[cfg(loom)]
impl Futex for LoomFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Duration) {
        let guard = self.lock.lock().expect("futex model lock");
        if word.load(Ordering::SeqCst) == expected {
            drop(self.sleepers.wait(guard).expect("futex model wait"));
        }
    }

    fn wake_all(&self, _word: &AtomicU32) {
        let _guard = self.lock.lock().expect("futex model lock");
        self.sleepers.notify_all();
    }
}

/// A futex for unit tests over a heap region: sleeping is a yield.
#[cfg(all(test, not(loom)))]
pub(crate) struct YieldFutex;

#[cfg(all(test, not(loom)))]
pub(crate) use tests::CountingFutex;

#[cfg(all(test, not(loom)))]
impl Futex for YieldFutex {
    fn wait(&self, _word: &AtomicU32, _expected: u32, _timeout: Duration) {
        std::thread::yield_now();
    }

    fn wake_all(&self, _word: &AtomicU32) {}
}

/// The shared words of the protocol and the futex to sleep on.
#[derive(Clone, Copy)]
pub(crate) struct Waiting<'a> {
    /// The futex word (header offset 384).
    pub notify: &'a AtomicU32,
    /// The number of registered sleepers (header offset 388).
    pub waiters: &'a AtomicU32,
    /// How to sleep and wake.
    pub futex: &'a dyn Futex,
}

impl Waiting<'_> {
    /// Called after a change others may wait for has been published: wakes every
    /// sleeper, or does nothing (no system call) when nobody is registered.
    pub(crate) fn notify(&self) {
        // SYNC(wake): the change was published before this fence; a waiter registers
        // before its own SeqCst fence and then looks. Of the two fences, the one first
        // in the total order lets the other side see its store: either the waiter's
        // look sees the change, or this load sees the registration (DESIGN: Waiting).
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            // SYNC(wake-word): Release, so a waiter that reads the new value before
            // sleeping also sees the change, and does not sleep on it.
            self.notify.fetch_add(1, Ordering::Release);
            self.futex.wake_all(self.notify);
        }
    }

    /// Calls `attempt` until it returns `Some` or `deadline` (if any) passes, which
    /// returns `None`. Between attempts it spins briefly, then sleeps on the futex
    /// word, at most [`MAX_SLEEP`] at a time.
    pub(crate) fn until<T>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        #[cfg(not(loom))]
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            if let Some(found) = attempt()? {
                return Ok(Some(found));
            }
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Ok(None),
                },
                None => MAX_SLEEP,
            };
            // Under loom the spinning is left out: loom explores every interleaving
            // anyway, and only the sleeping path needs checking.
            #[cfg(not(loom))]
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            // Register, then look once more, then sleep unless the word moved since
            // before that look. Registration may wrap a damaged count: that only costs
            // wake calls.
            self.waiters.fetch_add(1, Ordering::Relaxed);
            // SYNC(wake): pairs with the fence in `notify`.
            fence(Ordering::SeqCst);
            // SYNC(wake-word): Acquire pairs with the Release bump in `notify`.
            let seen = self.notify.load(Ordering::Acquire);
            let looked = attempt();
            if matches!(looked, Ok(None)) {
                self.futex.wait(self.notify, seen, left.min(MAX_SLEEP));
            }
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if let Some(found) = looked? {
                return Ok(Some(found));
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// Counts wake calls; sleeping returns at once.
    #[derive(Default)]
    pub(crate) struct CountingFutex(pub Arc<AtomicUsize>);

    impl Futex for CountingFutex {
        fn wait(&self, _word: &AtomicU32, _expected: u32, _timeout: Duration) {}

        fn wake_all(&self, _word: &AtomicU32) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn notify_makes_no_wake_call_without_waiters() {
        let (notify, waiters) = (AtomicU32::new(7), AtomicU32::new(0));
        let futex = CountingFutex::default();
        let waiting = Waiting {
            notify: &notify,
            waiters: &waiters,
            futex: &futex,
        };
        waiting.notify();
        assert_eq!(futex.0.load(Ordering::Relaxed), 0);
        assert_eq!(notify.load(Ordering::Relaxed), 7, "the word is left alone");
        waiters.store(1, Ordering::Relaxed);
        waiting.notify();
        assert_eq!(futex.0.load(Ordering::Relaxed), 1);
        assert_eq!(
            notify.load(Ordering::Relaxed),
            8,
            "the word moved before the wake"
        );
    }

    #[test]
    fn until_deregisters_whatever_the_outcome() {
        let (notify, waiters) = (AtomicU32::new(0), AtomicU32::new(3));
        let futex = CountingFutex::default();
        let waiting = Waiting {
            notify: &notify,
            waiters: &waiters,
            futex: &futex,
        };
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            waiting.until(deadline.into(), || Ok(None::<u8>)).unwrap(),
            None
        );
        let mut tries = 0;
        let found = waiting.until(None, || {
            tries += 1;
            Ok((tries == 50).then_some(tries))
        });
        assert_eq!(found.unwrap(), Some(50));
        let failed = waiting.until(None, || Err::<Option<u8>, _>(crate::Error::Full));
        assert!(matches!(failed, Err(crate::Error::Full)));
        assert_eq!(
            waiters.load(Ordering::Relaxed),
            3,
            "registrations are undone"
        );
    }
}
