//! Access rights a handle carries.

use syscall::flag::{O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY};

/// Rights carried by a handle; the provider's [`Server`](crate::Server) enforces them on every
/// request, and derived handles can only narrow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rights {
    /// Read only.
    Read,
    /// Write only.
    Write,
    /// Read and write.
    ReadWrite,
}

impl Rights {
    /// True when `self` grants nothing beyond `max`.
    pub fn within(self, max: Rights) -> bool {
        max == Rights::ReadWrite || self == max
    }

    /// Whether reads are allowed.
    pub fn can_read(self) -> bool {
        matches!(self, Rights::Read | Rights::ReadWrite)
    }

    /// Whether writes are allowed.
    pub fn can_write(self) -> bool {
        matches!(self, Rights::Write | Rights::ReadWrite)
    }

    /// Redox `O_*` access-mode flags for these rights (the wire encoding).
    pub fn to_redox_flags(self) -> u64 {
        let flags = match self {
            Rights::Read => O_RDONLY,
            Rights::Write => O_WRONLY,
            Rights::ReadWrite => O_RDWR,
        };
        flags as u64
    }

    /// Decodes Redox `O_*` access-mode flags; `None` when no access mode is set.
    pub fn from_redox_flags(flags: u64) -> Option<Rights> {
        let mode = usize::try_from(flags).ok()? & O_ACCMODE;
        match mode {
            O_RDONLY => Some(Rights::Read),
            O_WRONLY => Some(Rights::Write),
            O_RDWR => Some(Rights::ReadWrite),
            _ => None,
        }
    }

    /// Short text form: `r`, `w`, `rw`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rights::Read => "r",
            Rights::Write => "w",
            Rights::ReadWrite => "rw",
        }
    }

    /// Parses the short text form.
    pub fn parse(text: &str) -> Option<Rights> {
        match text {
            "r" => Some(Rights::Read),
            "w" => Some(Rights::Write),
            "rw" => Some(Rights::ReadWrite),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_and_narrowing() {
        for rights in [Rights::Read, Rights::Write, Rights::ReadWrite] {
            assert_eq!(
                Rights::from_redox_flags(rights.to_redox_flags()),
                Some(rights)
            );
            assert_eq!(Rights::parse(rights.as_str()), Some(rights));
            assert!(rights.within(Rights::ReadWrite));
        }
        assert!(!Rights::ReadWrite.within(Rights::Read));
        assert!(!Rights::Write.within(Rights::Read));
        assert_eq!(Rights::from_redox_flags(0), None);
    }
}
