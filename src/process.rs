//! Who wrote a record, and whether that process still exists.
//!
//! A producer's claim word names it (FORMAT.md): the writer field, its process ID in
//! the low 22 bits and a tag of its PID namespace in the top 10. A reader that finds
//! the head of the ring claimed and stuck asks whether the writer's process still
//! exists; if the writer is in the reader's own PID namespace and the answer is "no
//! such process", the record is abandoned without waiting out the abandon timeout
//! (DESIGN: Stalls and abandonment), so a consumer that starts after a producer was
//! killed, or a producer making room, is not held up for the timeout. A process ID
//! from another PID namespace (containers sharing a ring) means nothing here, so such
//! records always wait for the timeout.

use crate::format::{WRITER_PID_BITS, split_writer};

/// This process's writer field: its ID and its PID namespace's tag, read when a
/// handle is opened (so a process that moved to another namespace gets the new tag
/// with its next handle). A child created by `fork` must open the ring again: the
/// documentation of `Ring` says so.
pub(crate) fn own_writer() -> u32 {
    let pid = std::process::id();
    if pid >> WRITER_PID_BITS != 0 {
        return split_writer(pid).0; // cannot happen on Linux; tag 0: never asks
    }
    pid | namespace_tag() << WRITER_PID_BITS
}

/// A tag of this process's PID namespace, 1 to 1023: 1 + (N mod 1023), N the inode
/// number in the link `/proc/self/ns/pid` ("pid:[N]"); 0 if it can't be read (then
/// this process never finds a writer gone). Two namespaces share a tag with odds of 1
/// in 1023.
#[cfg(not(loom))]
fn namespace_tag() -> u32 {
    let Ok(link) = std::fs::read_link("/proc/self/ns/pid") else {
        return 0;
    };
    let inode = link
        .to_str()
        .and_then(|s| s.strip_prefix("pid:[")?.strip_suffix(']'))
        .and_then(|n| n.parse::<u64>().ok());
    inode.map_or(0, |inode| 1 + (inode % 1023) as u32)
}

/// Under loom no process is ever asked about.
#[cfg(loom)]
fn namespace_tag() -> u32 {
    0
}

/// Whether the writer field `writer` of a stuck claimed record names a process that
/// is certainly gone, for a handle whose own writer field is `own`: not that
/// handle's process, tagged with that handle's (known) PID namespace, and
/// `kill(pid, 0)` says there is no such process. Any doubt (another or an unknown
/// namespace, a process of another user, a zombie not yet reaped) answers no, and the
/// record waits for the abandon timeout.
pub(crate) fn writer_gone(writer: u32, own: u32) -> bool {
    let (pid, tag) = split_writer(writer);
    let own_tag = split_writer(own).1;
    writer != own && own_tag != 0 && tag == own_tag && !may_exist(pid)
}

/// Whether a process with ID `pid` may exist, as this process sees it. Only a
/// definite "no such process" from `kill(pid, 0)` (which sends no signal) answers
/// no; 0 (which `kill` reads as the process group) answers yes.
#[cfg(not(loom))]
fn may_exist(pid: u32) -> bool {
    use rustix::io::Errno;
    use rustix::process::{Pid, test_kill_process};
    // Callers pass 22-bit IDs, so the conversion holds and `from_raw` sees 0 (None) or
    // a positive ID.
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return true;
    };
    test_kill_process(pid) != Err(Errno::SRCH)
}

#[cfg(loom)]
fn may_exist(_pid: u32) -> bool {
    true
}

/// The writer field of process `pid` of this process's PID namespace (tests).
#[cfg(all(test, not(loom)))]
pub(crate) fn writer_here(pid: u32) -> u32 {
    pid | namespace_tag() << WRITER_PID_BITS
}

/// The ID of a process that has exited and been reaped (tests). The kernel hands IDs
/// out in increasing order, so it is not reused this soon.
#[cfg(all(test, not(loom)))]
pub(crate) fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn this_process_exists_and_a_reaped_child_does_not() {
        assert!(may_exist(std::process::id()));
        assert!(!may_exist(dead_pid()));
        assert!(may_exist(0), "0 is not a process ID");
    }

    #[test]
    fn own_writer_field_carries_this_process_and_its_namespace() {
        let own = own_writer();
        assert_eq!(split_writer(own).0, std::process::id());
        assert_ne!(split_writer(own).1, 0, "/proc/self/ns/pid is readable here");
        assert_eq!(own, writer_here(std::process::id()));
    }

    #[test]
    fn only_a_dead_writer_of_the_handles_namespace_is_gone() {
        let own = own_writer();
        let dead = writer_here(dead_pid());
        assert!(writer_gone(dead, own));
        assert!(
            !writer_gone(writer_here(std::process::id()), writer_here(1)),
            "alive"
        );
        assert!(!writer_gone(own, own), "the handle's own process");
        let (dead_pid, tag) = split_writer(dead);
        assert!(
            !writer_gone(dead_pid, own),
            "no namespace tag (older writers)"
        );
        let other = dead_pid | (tag % 1023 + 1) << WRITER_PID_BITS;
        assert!(!writer_gone(other, own), "another namespace");
        assert!(
            !writer_gone(dead_pid, dead_pid + 1),
            "neither the writer's nor the handle's namespace is known"
        );
        assert!(
            !writer_gone(dead, split_writer(own).0),
            "the handle's namespace is unknown"
        );
    }
}
