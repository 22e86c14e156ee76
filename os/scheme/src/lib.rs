//! Redox-style scheme IPC: a handle is a capability, carried as a Unix socket fd.
