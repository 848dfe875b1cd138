//! Crash points for the kill -9 tests. With `RME_FAILPOINT=<name>` in its
//! environment, a debug build of rme sends itself SIGKILL when it reaches the
//! point of that name — a real `kill -9` at an exact moment, which a test
//! cannot hit reliably from outside. Release builds compile [`hit`] to nothing.
//!
//! Points: `after-spool` (a flush's bodies are fsynced in the spool, the state
//! file not saved yet), `after-send` (a receiver took a body, its spool record
//! not removed yet).

/// SIGKILLs this process if `RME_FAILPOINT` names this point (debug builds only).
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("RME_FAILPOINT").is_some_and(|v| v == name) {
        // SAFETY: kill(2) on our own pid; nothing is borrowed.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
