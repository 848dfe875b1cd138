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

/// A test clock: with `RME_TEST_CLOCK_OFFSET_MS=<ms>` in its environment, a
/// debug build of rme stamps everything that many ms off the wall clock (a
/// backdated cron run, a long downtime in seconds). Release builds: always 0.
pub fn clock_offset_ms() -> i64 {
    #[cfg(debug_assertions)]
    {
        static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        *OFFSET.get_or_init(|| {
            std::env::var("RME_TEST_CLOCK_OFFSET_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
    }
    #[cfg(not(debug_assertions))]
    0
}
