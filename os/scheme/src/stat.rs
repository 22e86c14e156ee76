//! What `fstat` reports about a handle.

use syscall::data::Stat as RedoxStat;
use syscall::flag::{MODE_CHR, MODE_DIR, MODE_FILE, MODE_TYPE};

use crate::Rights;

/// The kind of node a handle refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory-like node that can be opened relative to.
    Directory,
    /// A regular file with a size.
    File,
    /// A stream (log, sensor, device channel).
    Stream,
}

/// Status of a handle, as reported by its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Node kind.
    pub kind: NodeKind,
    /// Size in bytes (files), 0 otherwise.
    pub size: u64,
    /// The rights this handle carries (filled in by the server, not the provider).
    pub rights: Rights,
}

impl Stat {
    pub(crate) fn to_redox(self) -> RedoxStat {
        let kind = match self.kind {
            NodeKind::Directory => MODE_DIR,
            NodeKind::File => MODE_FILE,
            NodeKind::Stream => MODE_CHR,
        };
        let perms = match self.rights {
            Rights::Read => 0o400,
            Rights::Write => 0o200,
            Rights::ReadWrite => 0o600,
        };
        RedoxStat {
            st_mode: kind | perms,
            st_size: self.size,
            ..RedoxStat::default()
        }
    }

    pub(crate) fn from_redox(stat: &RedoxStat) -> Option<Stat> {
        let kind = match stat.st_mode & MODE_TYPE {
            MODE_DIR => NodeKind::Directory,
            MODE_FILE => NodeKind::File,
            MODE_CHR => NodeKind::Stream,
            _ => return None,
        };
        let rights = match (stat.st_mode & 0o400 != 0, stat.st_mode & 0o200 != 0) {
            (true, true) => Rights::ReadWrite,
            (true, false) => Rights::Read,
            (false, true) => Rights::Write,
            (false, false) => return None,
        };
        Some(Stat {
            kind,
            size: stat.st_size,
            rights,
        })
    }
}
