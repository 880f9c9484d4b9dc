//! A job kind of its own, `word-count`, in a crate that depends on `spillway-core` and edits
//! nothing of Spillway's: its intake and consumer binaries each hand [`kinds`] to
//! `spillway_core::lambda::run`. README.md says how to deploy them with Spillway's template.

use async_trait::async_trait;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use spillway_core::processor::{ProcessError, Processor, Processors, Work};

/// The kinds this crate adds to Spillway's. Both binaries register them: intake refuses a kind it
/// does not know, and the consumer runs it.
pub fn kinds() -> Processors {
    Processors::new().with("word-count", WordCount)
}

/// `word-count`: the words, lines and characters of `{"text": "..."}`.
#[derive(Debug)]
pub struct WordCount;

#[derive(serde::Deserialize)]
struct Payload {
    text: String,
}

fn parse(payload: &RawValue) -> Result<Payload, String> {
    serde_json::from_str(payload.get()).map_err(|e| format!("expected {{\"text\": \"...\"}}: {e}"))
}

#[async_trait]
impl Processor for WordCount {
    /// Refuses at intake, with a `400`, a payload that is no `{"text": "..."}`.
    fn validate(&self, payload: &RawValue) -> Result<(), String> {
        parse(payload).map(drop)
    }

    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        let Payload { text } = parse(&work.payload).map_err(ProcessError::permanent)?;
        Ok(json!({
            "words": text.split_whitespace().count(),
            "lines": text.lines().count(),
            "characters": text.chars().count(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use spillway_core::domain::Kind;

    use super::*;

    fn work(payload: &str) -> Work {
        let payload = RawValue::from_string(payload.to_owned()).unwrap();
        Work::new(Kind::parse("word-count").unwrap(), payload)
    }

    #[tokio::test]
    async fn counts_the_words_lines_and_characters_of_its_text() {
        let result = WordCount
            .process(&work(r#"{"text": "one two\nthree été"}"#))
            .await
            .unwrap();
        assert_eq!(result, json!({"words": 4, "lines": 2, "characters": 17}));
    }

    #[test]
    fn refuses_a_payload_without_text_at_intake() {
        let payload = |raw: &str| RawValue::from_string(raw.to_owned()).unwrap();
        assert_eq!(WordCount.validate(&payload(r#"{"text": ""}"#)), Ok(()));
        for refused in [r#"{"txt": "a"}"#, r#"{"text": 3}"#, "[]"] {
            let error = WordCount.validate(&payload(refused)).unwrap_err();
            assert!(error.starts_with(r#"expected {"text": "...""#), "{error}");
        }
    }

    #[test]
    fn is_registered_as_word_count() {
        assert!(kinds().knows("word-count"));
    }
}
