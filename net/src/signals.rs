//! SIGINT and SIGTERM taken synchronously: blocked in every thread (threads started later
//! inherit the mask) and waited for by one thread, so a process can act before it stops (hand
//! over leadership, stop the nodes it started) instead of dying at once.

use std::time::Duration;

/// SIGINT and SIGTERM.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialize and fill a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks the stop signals in the calling thread, and so in every thread it starts after.
pub fn block_stop_signals() {
    let set = stop_signals();
    // SAFETY: pthread_sigmask on the calling thread with a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Unblocks them again; for a child process between fork and exec (a signal mask survives
/// exec). Async-signal-safe.
pub fn unblock_stop_signals_in_child() {
    let set = stop_signals();
    // SAFETY: sigprocmask with a valid set; async-signal-safe.
    unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}

/// Waits for a stop signal; returns its number.
pub fn wait_stop_signal() -> i32 {
    let set = stop_signals();
    let mut signal = 0;
    // SAFETY: sigwait reads the set and writes the signal number into a local.
    while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
    signal
}

/// The stop signal that arrived within `timeout`, if any.
pub fn stop_signal_within(timeout: Duration) -> Option<i32> {
    let set = stop_signals();
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: sigtimedwait only reads the set and the timeout.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (signal > 0).then_some(signal)
}
