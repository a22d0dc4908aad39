//! The signals `record` answers: SIGINT (Ctrl-C), SIGTERM (a scheduler cancelling the job, a
//! time limit) and SIGHUP stop tracing in order; SIGUSR1 asks for a dump of the flight
//! recorder (`bthost dump` sends it). Handlers only set flags, which the main loop reads.
//! A handled signal is reset to its default in children at exec: the workload keeps its own.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STOP: AtomicI32 = AtomicI32::new(0);
static DUMP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(sig: i32) {
    STOP.store(sig, Ordering::SeqCst);
}

extern "C" fn on_dump(_: i32) {
    DUMP.store(true, Ordering::SeqCst);
}

fn install(sig: i32, handler: extern "C" fn(i32)) {
    // SAFETY: a sigaction with a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

pub fn install_all() {
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        install(s, on_stop);
    }
    install(libc::SIGUSR1, on_dump);
}

/// The stopping signal received, if any.
pub fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether a dump was asked for since the last call.
pub fn take_dump_request() -> bool {
    DUMP.swap(false, Ordering::SeqCst)
}
