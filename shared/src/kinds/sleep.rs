use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::domain::WholeNumber;
use crate::processor::{ProcessError, Processor, Work};

/// Waits, then succeeds or fails as told; for demos, tests and load tests. A wait longer than a
/// second reports its progress after each whole second.
///
/// Payload: `{"ms": N, "fail": null | "retryable" | "permanent"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sleep;

/// The longest sleep accepted: a Lambda invocation lasts at most 15 minutes.
const MAX_MS: u64 = 900_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    ms: WholeNumber,
    #[serde(default)]
    fail: Option<Failure>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Failure {
    Retryable,
    Permanent,
}

fn parse(payload: &RawValue) -> Result<Payload, String> {
    let parsed: Payload = serde_json::from_str(payload.get()).map_err(|e| {
        format!(r#"sleep expects {{"ms": N, "fail": null | "retryable" | "permanent"}}: {e}"#)
    })?;
    if parsed.ms.0 > MAX_MS {
        return Err(format!(
            "sleep's ms must be at most {MAX_MS}, got {}",
            parsed.ms.0
        ));
    }
    Ok(parsed)
}

#[async_trait]
impl Processor for Sleep {
    fn validate(&self, payload: &RawValue) -> Result<(), String> {
        parse(payload).map(drop)
    }

    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        let payload = parse(&work.payload).map_err(ProcessError::permanent)?;
        let total = payload.ms.0;
        let mut slept = 0;
        while slept < total {
            let step = (total - slept).min(1_000);
            tokio::time::sleep(Duration::from_millis(step)).await;
            slept += step;
            if slept < total {
                work.progress(
                    slept as f64 / total as f64,
                    format!("slept {slept} of {total} ms"),
                );
            }
        }
        match payload.fail {
            None => Ok(json!({"slept_ms": payload.ms.0, "attempt": work.attempt})),
            Some(Failure::Retryable) => Err(ProcessError::retryable(format!(
                "sleep was asked to fail (retryable) on attempt {}",
                work.attempt
            ))),
            Some(Failure::Permanent) => Err(ProcessError::permanent(
                "sleep was asked to fail (permanent)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;

    fn work(payload: &str) -> Work {
        let payload = RawValue::from_string(payload.to_owned()).unwrap();
        Work {
            attempt: 2,
            ..Work::new(Kind::parse("sleep").unwrap(), payload)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_waits_then_reports_what_it_was_asked() {
        let ok = Sleep.process(&work(r#"{"ms": 50}"#)).await.unwrap();
        assert_eq!(ok, json!({"slept_ms": 50, "attempt": 2}));
        let whole = Sleep.process(&work(r#"{"ms": 5e1}"#)).await.unwrap();
        assert_eq!(whole, json!({"slept_ms": 50, "attempt": 2}));
        let retry = Sleep
            .process(&work(r#"{"ms": 0, "fail": "retryable"}"#))
            .await;
        assert!(matches!(retry, Err(ProcessError::Retryable { .. })));
        let permanent = Sleep
            .process(&work(r#"{"ms": 0, "fail": "permanent"}"#))
            .await;
        assert!(matches!(permanent, Err(ProcessError::Permanent { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_longer_than_a_second_reports_its_progress_each_second() {
        let reporter =
            crate::processor::Reporter::new(std::sync::Arc::new(crate::clock::SystemClock));
        let mut long = work(r#"{"ms": 2500}"#);
        long.reporter = reporter.clone();
        Sleep.process(&long).await.unwrap();
        let last = reporter.take().unwrap();
        assert_eq!(
            (last.fraction(), last.note()),
            (0.8, "slept 2000 of 2500 ms")
        );
        let mut short = work(r#"{"ms": 1000}"#);
        short.reporter = reporter.clone();
        Sleep.process(&short).await.unwrap();
        assert_eq!(reporter.take(), None, "a second's sleep reports nothing");
    }

    #[test]
    fn malformed_sleep_payloads_are_refused_at_intake() {
        for payload in [
            r#"{}"#,
            r#"{"ms": -1}"#,
            r#"{"ms": 1.5}"#,
            r#"{"ms": 1, "fail": "sometimes"}"#,
            r#"{"ms": 1, "x": 1}"#,
            r#"{"ms": 900001}"#,
        ] {
            let raw = RawValue::from_string(payload.to_owned()).unwrap();
            assert!(Sleep.validate(&raw).is_err(), "{payload}");
        }
    }
}
