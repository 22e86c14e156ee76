//! Relaying OS updates to the updater component over its `update` capability
//! (`testudo_os_update::update_scheme`). The agent is an untrusted transport: the updater
//! verifies every manifest and bundle before it writes a slot.
//!
//! What the relay does today: it tells the updater, after every connection to the hub, that
//! the cloud is reached ([`OsUpdateRelay::connected`]) — part of the health of a slot on
//! trial after an update, so an update that cuts the device off from its fleet is rolled back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use testudo_error_chain::error_chain;
use testudo_os_update::update_scheme::UpdateRequest;
use testudo_scheme::Handle;

use crate::component_log::ComponentLog;

/// The relay: the updater's `update` route.
#[derive(Debug)]
pub struct OsUpdateRelay {
    route: Handle,
    log: Arc<ComponentLog>,
    /// Whether the updater has been told of a connection in this run.
    told_connected: AtomicBool,
}

impl OsUpdateRelay {
    /// The relay over `route`, logging to `log`.
    pub fn new(route: Handle, log: Arc<ComponentLog>) -> OsUpdateRelay {
        OsUpdateRelay {
            route,
            log,
            told_connected: AtomicBool::new(false),
        }
    }

    /// The agent reached the hub: tells the updater (once per run; a refusal is logged and
    /// told again at the next connection).
    pub fn connected(&self) {
        if self.told_connected.load(Ordering::SeqCst) {
            return;
        }
        match self.route.write(&UpdateRequest::Connected.to_bytes()) {
            Ok(_) => self.told_connected.store(true, Ordering::SeqCst),
            Err(error) => self.log.line(&format!(
                "cloud: the updater was not told of the connection: {}",
                error_chain(&error)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider, Server};

    /// The updater's side, recording each request.
    #[derive(Clone, Default)]
    struct FakeUpdater {
        requests: Arc<Mutex<Vec<Option<UpdateRequest>>>>,
    }

    impl SchemeProvider for FakeUpdater {
        type Node = ();
        fn root(&mut self, _grant: &Grant) -> std::result::Result<(), Errno> {
            Ok(())
        }
        fn open(
            &mut self,
            _parent: &(),
            _path: &str,
            _rights: Rights,
        ) -> std::result::Result<Opened<()>, Errno> {
            Err(Errno::ENOENT)
        }
        fn write(&mut self, _node: &mut (), data: &[u8]) -> std::result::Result<usize, Errno> {
            self.requests
                .lock()
                .unwrap()
                .push(UpdateRequest::parse(data));
            Ok(data.len())
        }
        fn fstat(&mut self, _node: &()) -> std::result::Result<(NodeKind, u64), Errno> {
            Ok((NodeKind::File, 0))
        }
    }

    #[test]
    fn the_updater_is_told_of_the_first_connection_of_a_run_only() {
        let updater = FakeUpdater::default();
        let requests = Arc::clone(&updater.requests);
        let mut server = Server::new(updater);
        let route = server
            .grant(&Grant {
                consumer: "agent".into(),
                capability: "update".into(),
                rights: Rights::ReadWrite,
                allow: Vec::new(),
            })
            .unwrap();
        std::thread::spawn(move || server.run());
        let relay = OsUpdateRelay::new(route, Arc::new(ComponentLog::default()));
        relay.connected();
        relay.connected();
        assert_eq!(*requests.lock().unwrap(), [Some(UpdateRequest::Connected)]);
    }
}
