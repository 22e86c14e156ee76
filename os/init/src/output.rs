//! Output line assembly: bytes read from a component's output pipe become whole lines; a
//! line cut by a read waits for its end, and what is left when the pipe closes is a line.

/// The bytes of an unfinished line.
#[derive(Debug, Default)]
pub struct LineBuffer {
    partial: Vec<u8>,
}

impl LineBuffer {
    /// Adds `bytes` and returns every line they complete (without the newline).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let Some(last_newline) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        // One drain for every line the bytes complete, not one shift of the rest per line.
        let complete: Vec<u8> = self.partial.drain(..=last_newline).collect();
        complete[..last_newline]
            .split(|b| *b == b'\n')
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }

    /// The unfinished line, if any, once no more bytes will come.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_lines() {
        let mut buffer = LineBuffer::default();
        assert_eq!(buffer.push(b"one\ntwo\n"), ["one", "two"]);
        assert_eq!(buffer.finish(), None);
    }

    #[test]
    fn a_cut_line_waits_for_its_end() {
        let mut buffer = LineBuffer::default();
        assert!(buffer.push(b"hel").is_empty());
        assert_eq!(buffer.push(b"lo\nwor"), ["hello"]);
        assert_eq!(buffer.push(b"ld\n"), ["world"]);
    }

    #[test]
    fn the_rest_is_a_line_when_the_pipe_closes() {
        let mut buffer = LineBuffer::default();
        assert_eq!(buffer.push(b"a\nlast"), ["a"]);
        assert_eq!(buffer.finish().as_deref(), Some("last"));
        assert_eq!(buffer.finish(), None);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut buffer = LineBuffer::default();
        assert_eq!(buffer.push(b"a\xffb\n"), ["a\u{fffd}b"]);
        assert!(buffer.push(b"").is_empty());
    }
}
