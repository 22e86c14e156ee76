//! The component's log: lines to the `log` route (the log driver prefixes them with the
//! component's name), or to stderr (which `testudo-init` relays) when none is routed.

use std::io::Write;

use testudo_scheme::Handle;

/// Where the agent component's status lines go.
#[derive(Debug, Default)]
pub struct ComponentLog {
    route: Option<Handle>,
}

impl ComponentLog {
    /// Logs to `route`, or stderr without one.
    pub fn new(route: Option<Handle>) -> Self {
        Self { route }
    }

    /// Writes one line (a failing log never stops the agent: the line goes to stderr).
    pub fn line(&self, text: &str) {
        let line = format!("{}\n", text.trim_end());
        if let Some(route) = &self.route {
            if route.write_all(line.as_bytes()).is_ok() {
                return;
            }
        }
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}
