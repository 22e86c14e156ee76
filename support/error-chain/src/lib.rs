//! An error and its chain of causes on one line, `outer: cause: root cause`: how every
//! testudo daemon and tool reports a failure (on stderr, in events, in the log). Library
//! errors never repeat their source in their own Display text, so each part appears once.

use std::error::Error;

/// `error` and each of its sources, joined with `": "`.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn causes_follow_in_order_on_one_line() {
        let error = Layer(
            "starting storage",
            Some(Box::new(Layer(
                "binding /data",
                Some(Box::new(Layer("permission denied", None))),
            ))),
        );
        assert_eq!(
            error_chain(&error),
            "starting storage: binding /data: permission denied"
        );
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
