//! Error plumbing every layer shares: the boxed error the ports carry, and how a chain of
//! errors is shown in logs.

use std::fmt;

/// Any error a port's implementation reports, boxed so the port's own error type stays small.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Displays an error and all its sources, `outer: inner: root`, leaving out a source whose text
/// the error above it already quotes.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut above = self.0.to_string();
        f.write_str(&above)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            let text = error.to_string();
            if !above.contains(&text) {
                write!(f, ": {text}")?;
            }
            above = text;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the queue failed")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("queue unavailable")]
    struct Middle(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("could not send: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn the_chain_shows_every_source() {
        let error = Outer(Middle(std::io::Error::other("root cause")));
        assert_eq!(
            Chain(&error).to_string(),
            "the queue failed: queue unavailable: root cause"
        );
    }

    #[test]
    fn a_source_the_error_above_already_quotes_is_left_out() {
        let error = Quoting(std::io::Error::other("connection reset"));
        assert_eq!(
            Chain(&error).to_string(),
            "could not send: connection reset"
        );
    }
}
