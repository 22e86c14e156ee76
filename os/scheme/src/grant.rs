//! How handles reach a process: the environment contract with `testudo-init`, and the
//! [`Grant`] init sends a provider with each new root handle.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use crate::{Handle, Rights, SchemeError};

/// `TESTUDO_HANDLES=name=fd,...`: the routed handles of this process, by local route name.
pub const HANDLES_ENV: &str = testudo_plan::env::HANDLES;
/// `TESTUDO_SCHEME_FD=N`: a provider's control socket (init sends root handles on it).
pub const CONTROL_ENV: &str = testudo_plan::env::SCHEME_FD;

static HANDLES_TAKEN: AtomicBool = AtomicBool::new(false);
static CONTROL_TAKEN: AtomicBool = AtomicBool::new(false);

/// What a provider learns about a root handle init hands it: who holds the other end, for
/// which capability, with which rights, and the route's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Consuming component's name.
    pub consumer: String,
    /// Capability name on the provider.
    pub capability: String,
    /// Rights of the root handle.
    pub rights: Rights,
    /// Route parameters (`net`: allowed `host:port`s).
    pub allow: Vec<String>,
}

impl Grant {
    /// Text form carried in the `Sendfd` payload: `key=value` lines.
    pub fn encode(&self) -> String {
        let mut text = format!(
            "consumer={}\ncapability={}\nrights={}\n",
            self.consumer,
            self.capability,
            self.rights.as_str()
        );
        for allow in &self.allow {
            text.push_str("allow=");
            text.push_str(allow);
            text.push('\n');
        }
        text
    }

    /// Parses [`Grant::encode`]'s form.
    pub fn decode(bytes: &[u8]) -> Option<Grant> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (mut consumer, mut capability, mut rights, mut allow) = (None, None, None, Vec::new());
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match key {
                "consumer" => consumer = Some(value.to_owned()),
                "capability" => capability = Some(value.to_owned()),
                "rights" => rights = Rights::parse(value),
                "allow" => allow.push(value.to_owned()),
                _ => return None,
            }
        }
        Some(Grant {
            consumer: consumer?,
            capability: capability?,
            rights: rights?,
            allow,
        })
    }
}

/// The handles routed to this process, by local route name.
#[derive(Debug, Default)]
pub struct GrantedHandles {
    handles: BTreeMap<String, Handle>,
}

impl GrantedHandles {
    /// Removes and returns the handle routed under `name`.
    pub fn take(&mut self, name: &str) -> Result<Handle, SchemeError> {
        self.handles
            .remove(name)
            .ok_or_else(|| SchemeError::MissingHandle {
                name: name.to_owned(),
            })
    }

    /// Names of the handles not yet taken.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handles.keys().map(String::as_str)
    }

    /// All remaining handles.
    pub fn into_map(self) -> BTreeMap<String, Handle> {
        self.handles
    }
}

/// Formats the [`HANDLES_ENV`] value for `name -> fd` pairs.
pub fn format_handles_env<'a>(entries: impl IntoIterator<Item = (&'a str, RawFd)>) -> String {
    entries
        .into_iter()
        .map(|(name, fd)| format!("{name}={fd}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a [`HANDLES_ENV`] value.
pub fn parse_handles_env(text: &str) -> Result<Vec<(String, RawFd)>, SchemeError> {
    let mut entries = Vec::new();
    for entry in text.split(',').filter(|entry| !entry.is_empty()) {
        let bad = || SchemeError::HandleEnv {
            var: HANDLES_ENV,
            entry: entry.to_owned(),
        };
        let (name, fd) = entry.split_once('=').ok_or_else(bad)?;
        let fd: RawFd = fd.parse().map_err(|_| bad())?;
        if name.is_empty() || fd < 3 {
            return Err(bad());
        }
        entries.push((name.to_owned(), fd));
    }
    Ok(entries)
}

/// Takes ownership of an inherited fd after checking it is open; marks it close-on-exec.
fn adopt(var: &'static str, entry: &str, fd: RawFd) -> Result<OwnedFd, SchemeError> {
    let bad = || SchemeError::HandleEnv {
        var,
        entry: entry.to_owned(),
    };
    // SAFETY: F_GETFD only inspects the descriptor table; an invalid number yields EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD).map_err(|_| bad())?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|_| bad())?;
    // SAFETY: init placed this fd in our table for us (the HANDLES_ENV/CONTROL_ENV
    // contract), it is open (checked above), and the TAKEN flags ensure it is adopted once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The handles `testudo-init` routed to this process (from [`HANDLES_ENV`]). Only the first
/// call returns them; later calls return an empty set.
pub fn granted_handles() -> Result<GrantedHandles, SchemeError> {
    if HANDLES_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(GrantedHandles::default());
    }
    let text = std::env::var(HANDLES_ENV).unwrap_or_default();
    let mut handles = BTreeMap::new();
    for (name, fd) in parse_handles_env(&text)? {
        let owned = adopt(HANDLES_ENV, &name, fd)?;
        handles.insert(name, Handle::from_fd(owned));
    }
    Ok(GrantedHandles { handles })
}

/// A provider's control socket (from [`CONTROL_ENV`]), if it was given one. Only the first
/// call returns it.
pub fn provider_control() -> Result<Option<OwnedFd>, SchemeError> {
    if CONTROL_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let Ok(text) = std::env::var(CONTROL_ENV) else {
        return Ok(None);
    };
    let fd: RawFd = text.parse().map_err(|_| SchemeError::HandleEnv {
        var: CONTROL_ENV,
        entry: text.clone(),
    })?;
    adopt(CONTROL_ENV, &text, fd).map(Some)
}

/// Sends a new root handle `fd` described by `grant` over a provider's control socket (what
/// `testudo-init` does for every route). The caller keeps the other end of `fd`'s pair for
/// the consumer and should close its copy of `fd` afterwards.
pub fn send_grant(
    control: std::os::fd::BorrowedFd<'_>,
    grant: &Grant,
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<(), SchemeError> {
    use crate::backend::Backend;
    let mut message = Vec::new();
    crate::wire::encode_request(
        &mut message,
        syscall::schemev2::Opcode::Sendfd,
        0,
        [0; 6],
        grant.encode().as_bytes(),
    );
    crate::backend::Active::send(control, &message, Some(fd))
}

/// A connected pair of handle sockets: `(provider end, consumer end)`.
pub fn handle_pair() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), SchemeError> {
    use crate::backend::Backend;
    crate::backend::Active::pair()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_round_trips() {
        let grant = Grant {
            consumer: "app".into(),
            capability: "egress".into(),
            rights: Rights::ReadWrite,
            allow: vec!["hub.local:8883".into(), "10.0.0.1:443".into()],
        };
        assert_eq!(Grant::decode(grant.encode().as_bytes()), Some(grant));
        assert_eq!(Grant::decode(b"consumer=x\n"), None);
        assert_eq!(Grant::decode(b"\xff"), None);
    }

    #[test]
    fn handles_env_round_trips_and_rejects_garbage() {
        let text = format_handles_env([("log", 3), ("storage", 4)]);
        assert_eq!(text, "log=3,storage=4");
        assert_eq!(
            parse_handles_env(&text).expect("parses"),
            vec![("log".to_owned(), 3), ("storage".to_owned(), 4)]
        );
        assert!(parse_handles_env("log").is_err());
        assert!(parse_handles_env("log=x").is_err());
        assert!(parse_handles_env("log=1").is_err());
        assert!(parse_handles_env("").expect("empty is fine").is_empty());
    }
}
