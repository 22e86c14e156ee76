//! The head of an HTTP/1.1 answer, read from untrusted bytes: the status line and the header
//! fields, split and nothing more. DPS's answers ([`crate::dps_http`]) and module downloads
//! ([`crate::module_fetch`]) read the fields they care about from it, each with its own
//! rules and errors.

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// The status code (three digits).
    pub status: u16,
    /// The header fields in order: name as sent, value trimmed.
    pub fields: Vec<(&'a str, &'a str)>,
    /// Bytes of the head with its closing empty line: where the body starts.
    pub len: usize,
}

/// Why bytes are not a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The head is not UTF-8.
    NotText,
    /// The first line is not `HTTP/1.x CODE ...`.
    StatusLine {
        /// The line as received.
        line: String,
    },
    /// A field line without `:`.
    FieldLine {
        /// The line as received.
        line: String,
    },
}

/// Splits the head at the start of `bytes`; `Ok(None)` while its closing empty line has not
/// arrived. The caller bounds how many bytes it passes.
pub fn split(bytes: &[u8]) -> Result<Option<Head<'_>>, HeadError> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| HeadError::NotText)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| HeadError::StatusLine {
            line: status_line.to_owned(),
        })?;
    let fields = lines
        .map(|line| {
            line.split_once(':')
                .map(|(name, value)| (name, value.trim()))
                .ok_or_else(|| HeadError::FieldLine {
                    line: line.to_owned(),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Head {
        status,
        fields,
        len: end + 4,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_head_and_says_where_the_body_starts() {
        let head = split(b"HTTP/1.1 206 Partial\r\nContent-Length:  3 \r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 206);
        assert_eq!(head.fields, [("Content-Length", "3")]);
        assert_eq!(head.len, 45);
        assert_eq!(split(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(matches!(
            split(b"HTTP/2 200\r\n\r\n"),
            Err(HeadError::StatusLine { .. })
        ));
        assert!(matches!(
            split(b"HTTP/1.1 2000\r\n\r\n"),
            Err(HeadError::StatusLine { .. })
        ));
        assert!(matches!(
            split(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
            Err(HeadError::FieldLine { .. })
        ));
        assert_eq!(split(b"HTTP/1.1 200 \xff\r\n\r\n"), Err(HeadError::NotText));
    }
}
