//! How the functions log, following Lambda's advanced logging controls: `AWS_LAMBDA_LOG_FORMAT`
//! chooses JSON or plain text, and `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`) the level.
//!
//! A JSON line is one flat object: `timestamp`, `level`, `message`, the event's fields, and the
//! fields of every span it happened in (`job_id`, `correlation_id`, `message_id`, `attempt`,
//! Lambda's `requestId`), so a Logs Insights query filters on them directly:
//! `filter correlation_id = "…"`.

use std::fmt;
use std::io;
use std::str::FromStr;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::domain::Timestamp;

/// Installs the functions' subscriber on stdout, as the environment asks.
pub fn init() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let filter = filter(|name| std::env::var(name).ok());
    if json {
        tracing::subscriber::set_global_default(json_subscriber(filter, io::stdout)).ok();
    } else {
        // Lambda stamps each plain-text line itself, and a log group shows no colours.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .without_time()
            .with_ansi(false)
            .try_init()
            .ok();
    }
}

/// The JSON subscriber, writing to `writer`.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// The level from `AWS_LAMBDA_LOG_LEVEL` (Lambda's names, `FATAL` included) when it is set;
/// otherwise `RUST_LOG`'s directives, over a default of `INFO`.
pub fn filter(lookup: impl Fn(&str) -> Option<String>) -> EnvFilter {
    let (level, directives) = match lookup("AWS_LAMBDA_LOG_LEVEL") {
        Some(level) if level.trim().eq_ignore_ascii_case("fatal") => (LevelFilter::ERROR, None),
        Some(level) => (
            LevelFilter::from_str(level.trim()).unwrap_or(LevelFilter::INFO),
            None,
        ),
        None => (LevelFilter::INFO, lookup("RUST_LOG")),
    };
    EnvFilter::builder()
        .with_default_directive(level.into())
        .parse_lossy(directives.unwrap_or_default())
}

/// Formats an event as one flat JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        line.insert("timestamp".to_owned(), Value::String(now.to_string()));
        line.insert(
            "level".to_owned(),
            Value::String(event.metadata().level().as_str().to_owned()),
        );
        // Outer spans first, so an inner span's field wins over an outer one of the same name.
        if let Some(scope) = context.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str(fields.as_str())
                {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use tracing::{info, info_span, warn};

    use super::*;
    use crate::testing::LogBuffer;

    fn lines(filter: EnvFilter, log: impl FnOnce()) -> Vec<Value> {
        let buffer = LogBuffer::default();
        tracing::subscriber::with_default(json_subscriber(filter, buffer.clone()), log);
        buffer.lines()
    }

    #[test]
    fn a_line_is_one_flat_object_with_every_spans_fields() {
        let lines = lines(EnvFilter::new("info"), || {
            let invocation = info_span!("invoke", requestId = "r-1", attempt = 0);
            let _outer = invocation.enter();
            let record = info_span!("record", job_id = "j-1", attempt = tracing::field::Empty);
            record.record("attempt", 2);
            let _inner = record.enter();
            warn!(delay_seconds = 4, ok = false, "retry scheduled");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "retry scheduled");
        assert_eq!(line["requestId"], "r-1");
        assert_eq!(line["job_id"], "j-1");
        assert_eq!(line["attempt"], 2, "the inner span wins");
        assert_eq!(line["delay_seconds"], 4);
        assert_eq!(line["ok"], false);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn the_level_follows_lambdas_controls() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let count = |filter| {
            lines(filter, || {
                tracing::debug!("d");
                info!("i");
                tracing::error!("e");
            })
            .len()
        };
        assert_eq!(count(filter(env(&[]))), 2);
        assert_eq!(count(filter(env(&[("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]))), 3);
        assert_eq!(count(filter(env(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]))), 1);
        assert_eq!(
            count(filter(env(&[
                ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
                ("RUST_LOG", "trace")
            ]))),
            1
        );
        assert_eq!(count(filter(env(&[("RUST_LOG", "error")]))), 1);
    }
}
