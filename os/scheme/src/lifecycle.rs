//! How a component ends when init stops it. Each component is PID 1 of its own PID
//! namespace, and the kernel does not deliver a signal to a namespace's init unless it has a
//! handler for it: without one, init's SIGTERM is ignored and the component is killed only
//! after init's grace period.

extern "C" fn exit_now(_signal: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Exit at once (status 0) on SIGTERM. For components that hold nothing a stop could lose:
/// every reply is sent and every write durable (or not needed) before the next request.
pub fn exit_on_sigterm() {
    // SAFETY: installs an async-signal-safe handler for SIGTERM.
    unsafe {
        libc::signal(libc::SIGTERM, exit_now as *const () as libc::sighandler_t);
    }
}
