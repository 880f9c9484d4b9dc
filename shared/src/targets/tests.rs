use std::time::Duration;

use serde_json::json;

use super::*;
use crate::config::{Config, ConfigError, Function};

use crate::webhook::WebhookSettings;

const RESIZE: &str = "arn:aws:lambda:eu-west-1:123456789012:function:resize";

fn parse(document: serde_json::Value) -> Result<Declarations, String> {
    Declarations::parse(&document.to_string())
}

#[test]
fn a_document_declares_each_kind_with_its_target_and_limits() {
    let declared = parse(json!({
        "resize": {"target": {"lambda": format!("{RESIZE}:live")}, "timeout_seconds": 60,
                   "max_attempts": 3, "ttl_seconds": 900, "max_concurrency": 5},
        "ledger": {"target": {"http": "https://ledger.example/jobs"}},
        "echo": {"target": "builtin"}
    }))
    .unwrap();
    let kinds: Vec<(&str, &Declaration)> = declared.iter().map(|(k, d)| (k.as_str(), d)).collect();
    assert_eq!(
        kinds,
        [
            (
                "echo",
                &Declaration {
                    target: Target::Builtin,
                    limits: Limits::default()
                }
            ),
            (
                "ledger",
                &Declaration {
                    target: Target::Http("https://ledger.example/jobs".into()),
                    limits: Limits::default()
                }
            ),
            (
                "resize",
                &Declaration {
                    target: Target::Lambda(format!("{RESIZE}:live")),
                    limits: Limits {
                        max_attempts: Some(3),
                        default_ttl: Some(Duration::from_secs(900)),
                        timeout: Some(Duration::from_secs(60)),
                        max_concurrency: Some(5),
                    }
                }
            ),
        ]
    );
    assert!(Declarations::parse("  ").unwrap().is_empty());
}

#[test]
fn a_document_that_cannot_be_used_is_refused_with_the_kind_and_the_problem() {
    for (document, expected) in [
        (json!([1]), "expected a JSON object of kinds"),
        (
            json!({"Bad Name": {"target": "builtin"}}),
            "kind `Bad Name`",
        ),
        (
            json!({"resize": {"target": {"lambda": RESIZE}, "timeout": 3}}),
            "kind `resize`: expected {\"target\"",
        ),
        (
            json!({"resize": {"target": {"sqs": RESIZE}}}),
            "kind `resize`: expected",
        ),
        (
            json!({"resize": {"target": {"lambda": "resize"}}}),
            "kind `resize`: `resize` is not a Lambda function ARN",
        ),
        (
            json!({"resize": {"target": {"lambda": "arn:aws:lambda:eu-west-1:1234:function:x"}}}),
            "not a Lambda function ARN",
        ),
        (
            json!({"resize": {"target": {"lambda": RESIZE}, "timeout_seconds": 901}}),
            "kind `resize`: timeout_seconds must be 1 to 900",
        ),
        (
            json!({"resize": {"target": {"lambda": RESIZE}, "max_attempts": 0}}),
            "kind `resize`: max_attempts must be 1 to 1000",
        ),
        (
            json!({"resize": {"target": {"lambda": RESIZE}, "max_concurrency": 0}}),
            "kind `resize`: max_concurrency must be 1 to 1000",
        ),
        (
            json!({"resize": {"target": {"lambda": RESIZE}, "max_concurrency": 1001}}),
            "kind `resize`: max_concurrency must be 1 to 1000",
        ),
        (
            json!({"webhook": {"target": {"lambda": RESIZE}}}),
            "kind `webhook`: the name of a kind Spillway ships",
        ),
        (
            json!({"sleep": {"target": {"http": "https://x.example"}}}),
            "kind `sleep`: the name of a kind Spillway ships",
        ),
        (
            json!({"resize": {"target": "builtin"}}),
            "kind `resize`: a builtin target names a kind Spillway ships",
        ),
    ] {
        let error = parse(document.clone()).unwrap_err();
        assert!(error.contains(expected), "{document}: {error}");
    }
}

fn consumer(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut env: Vec<(&str, &str)> = vec![
        ("SPILLWAY_TABLE", "jobs"),
        ("SPILLWAY_QUEUE_URL", "http://localhost/q"),
    ];
    env.extend_from_slice(pairs);
    Config::for_function(Function::Consumer, |name| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[test]
fn a_lambda_kind_whose_function_the_stack_may_not_invoke_stops_the_cold_start() {
    let kinds = json!({"resize": {"target": {"lambda": RESIZE}}}).to_string();
    let error = consumer(&[("SPILLWAY_KINDS", &kinds)]).unwrap_err();
    assert_eq!(error.variable, "SPILLWAY_KINDS");
    assert!(
        error.problem.contains(RESIZE) && error.problem.contains("LambdaTargetArns"),
        "{error}"
    );
    let other = "arn:aws:lambda:eu-west-1:123456789012:function:other";
    let granted = format!("{other}, {RESIZE}");
    let config = consumer(&[
        ("SPILLWAY_KINDS", &kinds),
        ("SPILLWAY_LAMBDA_TARGET_ARNS", &granted),
    ])
    .unwrap();
    assert_eq!(config.settings.kinds.functions().count(), 1);
    // An alias is a function of its own to IAM: granting the function does not grant it.
    let alias = json!({"resize": {"target": {"lambda": format!("{RESIZE}:live")}}}).to_string();
    assert!(
        consumer(&[
            ("SPILLWAY_KINDS", &alias),
            ("SPILLWAY_LAMBDA_TARGET_ARNS", RESIZE)
        ])
        .is_err()
    );
}

#[test]
fn a_declared_kind_must_fit_the_rest_of_the_configuration() {
    let ledger = json!({"ledger": {"target": {"http": "http://10.0.3.7:8080/jobs"}}}).to_string();
    let error = consumer(&[("SPILLWAY_KINDS", &ledger)]).unwrap_err();
    assert!(error.problem.contains("WebhookAllow"), "{error}");
    consumer(&[
        ("SPILLWAY_KINDS", &ledger),
        ("SPILLWAY_WEBHOOK_ALLOW", "10.0.3.0/24"),
    ])
    .unwrap();

    let attempts = json!({"echo": {"target": "builtin", "max_attempts": 20}}).to_string();
    let error = consumer(&[("SPILLWAY_KINDS", &attempts)]).unwrap_err();
    assert!(
        error.problem.contains("SPILLWAY_MAX_RECEIVE_COUNT (20)"),
        "{error}"
    );

    let ttl = json!({"echo": {"target": "builtin", "ttl_seconds": 90_000}}).to_string();
    let intake = Config::for_function(Function::Intake, |name| match name {
        "SPILLWAY_TABLE" | "SPILLWAY_QUEUE_URL" | "SPILLWAY_HIGH_QUEUE_URL" => Some("x".into()),
        "SPILLWAY_KINDS" => Some(ttl.clone()),
        _ => None,
    });
    let error = intake.unwrap_err();
    assert!(
        error.problem.contains("SPILLWAY_MAX_TTL_SECONDS (86400)"),
        "{error}"
    );
}

#[test]
fn the_declared_kinds_become_processors_with_their_limits() {
    let declared = parse(json!({
        "resize": {"target": {"lambda": RESIZE}, "max_attempts": 2},
        "ledger": {"target": {"http": "https://ledger.example/jobs"}, "timeout_seconds": 5},
        "sleep": {"target": "builtin"}
    }))
    .unwrap();
    let webhook = Webhook::new(WebhookSettings::default(), None);
    let shipped = crate::kinds::builtin_with(webhook.clone());
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let processors = declared.processors(&shipped, &webhook, || lambda_client(&sdk));
    let kinds: Vec<&str> = processors.kinds().iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, ["ledger", "resize", "sleep"]);
    let limits = |name| processors.limits(&Kind::parse(name).unwrap());
    assert_eq!(limits("resize").max_attempts, Some(2));
    assert_eq!(limits("ledger").timeout, Some(Duration::from_secs(5)));
    assert_eq!(limits("sleep"), Limits::default());

    // Intake's: the same kinds and limits, and no client made.
    let admitting = declared.admitting(&shipped, &webhook);
    let kinds: Vec<&str> = admitting.kinds().iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, ["ledger", "resize", "sleep"]);
    assert_eq!(
        admitting
            .limits(&Kind::parse("resize").unwrap())
            .max_attempts,
        Some(2)
    );
    let resize = admitting.get(&Kind::parse("resize").unwrap()).unwrap();
    let payload = RawValue::from_string(r#"{"image": "a.png"}"#.to_owned()).unwrap();
    assert!(resize.admit(&payload).is_ok());
}

#[test]
fn a_target_receives_the_job_as_its_event() {
    let payload = RawValue::from_string(r#"{"image": "s3://b/k.png"}"#.into()).unwrap();
    let work = Work {
        attempt: 2,
        deadline: Timestamp::from_millis(1_795_000_000_000),
        correlation_id: Some(CorrelationId::parse(b"req-7").unwrap()),
        ..Work::new(Kind::parse("resize").unwrap(), payload)
    };
    let event: serde_json::Value = serde_json::from_str(&event(&work)).unwrap();
    assert_eq!(
        event,
        json!({
            "id": work.job_id.to_string(),
            "kind": "resize",
            "payload": {"image": "s3://b/k.png"},
            "attempt": 2,
            "deadline": serde_json::to_value(work.deadline).unwrap(),
            "correlation_id": "req-7"
        })
    );
}

#[test]
fn a_declared_kind_may_not_take_the_name_of_a_compiled_one() {
    let declared = parse(json!({"word-count": {"target": {"lambda": RESIZE}}})).unwrap();
    let compiled = Processors::new().with("word-count", crate::kinds::Echo);
    let error = declared.refuse_compiled(&compiled).unwrap_err();
    assert!(error.contains("`word-count` is compiled into"), "{error}");
    assert!(declared.refuse_compiled(&Processors::new()).is_ok());
}

#[test]
fn a_fanout_kind_declares_one_child_kind_per_target_with_its_limits() {
    let declared = parse(json!({
        "notify": {"targets": {"email": {"http": "https://mail.example/send"},
                               "resize": {"lambda": RESIZE}},
                   "max_attempts": 2}
    }))
    .unwrap();
    let limits = Limits {
        max_attempts: Some(2),
        ..Limits::default()
    };
    let children: Vec<(&str, &Declaration)> =
        declared.iter().map(|(k, d)| (k.as_str(), d)).collect();
    assert_eq!(
        children,
        [
            (
                "notify--email",
                &Declaration {
                    target: Target::Http("https://mail.example/send".into()),
                    limits
                }
            ),
            (
                "notify--resize",
                &Declaration {
                    target: Target::Lambda(RESIZE.into()),
                    limits
                }
            ),
        ]
    );
    let processors = declared.processors(
        &crate::kinds::builtin(),
        &crate::webhook::Webhook::new(WebhookSettings::default(), None),
        || {
            lambda_client(
                &aws_config::SdkConfig::builder()
                    .behavior_version(aws_config::BehaviorVersion::latest())
                    .build(),
            )
        },
    );
    let notify = Kind::parse("notify").unwrap();
    let targets: Vec<&str> = processors
        .fanout(&notify)
        .unwrap()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(targets, ["email", "resize"]);
    assert_eq!(processors.limits(&notify), limits);
    assert!(processors.is_child(&Kind::parse("notify--email").unwrap()));
    let submittable: Vec<&str> = processors.kinds().iter().map(|k| k.as_str()).collect();
    assert_eq!(submittable, ["notify"]);
}

#[test]
fn a_fanout_target_may_set_limits_of_its_own_in_place_of_the_kinds() {
    let declared = parse(json!({
        "notify": {"targets": {"email": {"http": "https://mail.example/send"},
                               "sms": {"lambda": RESIZE, "max_concurrency": 2, "timeout_seconds": 5}},
                   "max_attempts": 4, "timeout_seconds": 30, "ttl_seconds": 600}
    }))
    .unwrap();
    let limits: Vec<(&str, Limits)> = declared
        .iter()
        .map(|(k, d)| (k.as_str(), d.limits))
        .collect();
    let kinds = Limits {
        max_attempts: Some(4),
        default_ttl: Some(Duration::from_secs(600)),
        timeout: Some(Duration::from_secs(30)),
        max_concurrency: None,
    };
    assert_eq!(
        limits,
        [
            ("notify--email", kinds),
            (
                "notify--sms",
                Limits {
                    timeout: Some(Duration::from_secs(5)),
                    max_concurrency: Some(2),
                    ..kinds
                }
            ),
        ]
    );
}

#[test]
fn a_fanout_that_cannot_be_used_is_refused_with_the_kind_and_the_problem() {
    let http = json!({"http": "https://a.example/"});
    for (document, problem) in [
        (json!({"n": {"targets": {"a": http}}}), "2 to 10 targets"),
        (
            json!({"n": {"targets": {"a": http, "b": "builtin"}}}),
            "target `b`: a fan-out's targets are lambda or http",
        ),
        (
            json!({"n": {"targets": {"a": http, "B": http}}}),
            "target `B`",
        ),
        (
            json!({"n": {"target": http, "targets": {"a": http, "b": http}}}),
            "either",
        ),
        (
            json!({"n--a": {"target": http}}),
            "kind `n--a`: `--` is kept",
        ),
        (
            json!({"n": {"targets": {"a": http, "b": {"http": "https://b.example/", "lambda": RESIZE}}}}),
            "target `b`: give either \"lambda\" or \"http\"",
        ),
        (
            json!({"n": {"targets": {"a": http, "b": {"http": "https://b.example/", "ttl_seconds": 5}}}}),
            "target `b`: expected",
        ),
        (
            json!({"n": {"targets": {"a": http, "b": {"http": "https://b.example/", "max_concurrency": 0}}}}),
            "target `b`: max_concurrency must be 1 to 1000",
        ),
        (
            json!({"n": {"targets": {"a": http, "b": {"lambda": "arn:aws:lambda:x"}}}}),
            "target `b`: `arn:aws:lambda:x` is not a Lambda function ARN",
        ),
    ] {
        let error = parse(document.clone()).unwrap_err();
        assert!(error.contains(problem), "{document}: {error}");
    }
}
