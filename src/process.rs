//! Whether the process that claimed a record still exists. A reader that finds the
//! head of the ring claimed by a process that is gone abandons the record without
//! waiting out the abandon timeout (DESIGN: Stalls and abandonment), so a consumer
//! that starts after a producer was killed, or a producer making room, is not held up
//! for the whole timeout.

/// Whether a process with ID `pid` may exist, as this process sees it. Only a
/// definite "no such process" from `kill(pid, 0)` (which sends no signal) answers
/// no; a process of another user (`EPERM`), a zombie not yet reaped, and an ID that is
/// not a process ID (0, or too large: `kill` would read it as a process group) answer
/// yes, and then the record waits for the abandon timeout as before.
///
/// A wrong "no" is possible: a producer in another PID namespace records an ID that
/// means nothing, or another process, here. It costs that producer one retry, because
/// abandoning a live producer's record is always safe: its commit fails and it pushes
/// the entry again.
#[cfg(not(loom))]
pub(crate) fn may_exist(pid: u32) -> bool {
    use rustix::io::Errno;
    use rustix::process::{Pid, test_kill_process};
    // An ID above i32::MAX fails the conversion, so `from_raw` sees 0 (None) or a
    // positive ID.
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return true;
    };
    test_kill_process(pid) != Err(Errno::SRCH)
}

/// Under loom every writer is a live thread of this process.
#[cfg(loom)]
pub(crate) fn may_exist(_pid: u32) -> bool {
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn this_process_exists_and_a_reaped_child_does_not() {
        assert!(may_exist(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Reaped, so its ID is free; the kernel hands IDs out in increasing order, so
        // it is not reused this soon.
        assert!(!may_exist(pid), "process {pid} was reaped");
    }

    #[test]
    fn ids_that_are_not_process_ids_count_as_existing() {
        // 0 and IDs above i32::MAX would name process groups for kill(2).
        for pid in [0, u32::MAX, 1 << 31] {
            assert!(may_exist(pid), "{pid}");
        }
    }
}
