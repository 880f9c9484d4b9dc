use super::*;

const DEPLOYED: &str = include_str!("../../../../infra/template.yaml");

/// The smallest template with everything `read` looks for; the tests edit one line of it.
const SMALL: &str = r#"
Parameters:
  Size:
    Type: String
    Default: small
    AllowedValues: [small, big]
  Attempts:
    Type: Number
    Default: 4
    MinValue: 1
    MaxValue: 100
  Required:
    Type: Number
Conditions:
  IsBig: !Equals [!Ref Size, big]
  IsSmall: !Not [!Condition IsBig]
  Either: !Or [!Condition IsBig, !Condition IsSmall]
Globals:
  Function:
    Timeout: 40
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 240
      RedrivePolicy:
        maxReceiveCount: 20
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      DefaultRouteSettings:
        ThrottlingRateLimit: 70
        ThrottlingBurstLimit: 140
  Intake:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: intake
    Properties:
      Events:
        Submit:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: POST
            Path: /jobs
  Status:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: status
    Properties:
      Events:
        Get:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /jobs/{id}
  Consumer:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: consumer
    Properties:
      Environment:
        Variables:
          SPILLWAY_MAX_ATTEMPTS: !Ref Attempts
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 10
            ScalingConfig:
              MaximumConcurrency: 20
"#;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The template's values by scenario field.
fn values(template: &str, pairs: &[(&str, &str)]) -> BTreeMap<&'static str, Taken> {
    match read(template, &params(pairs)) {
        Ok(taken) => taken
            .into_iter()
            .map(|taken| (taken.field, taken))
            .collect(),
        Err(error) => panic!("{error}"),
    }
}

fn value(template: &str, pairs: &[(&str, &str)], field: &str) -> f64 {
    values(template, pairs)[field].value
}

fn error(template: &str, pairs: &[(&str, &str)]) -> String {
    match read(template, &params(pairs)) {
        Ok(taken) => panic!("expected an error, got {taken:?}"),
        Err(error) => error.to_string(),
    }
}

/// `SMALL` with `from` (which it must hold) replaced by `to`.
fn small_with(from: &str, to: &str) -> String {
    assert!(SMALL.contains(from), "SMALL has no {from:?}");
    SMALL.replacen(from, to, 1)
}

#[test]
fn the_deployed_template_gives_every_field_its_default() {
    let taken = values(DEPLOYED, &[]);
    let expected = [
        ("intake.throttle_rate", 100.0),
        ("intake.throttle_burst", 200.0),
        ("intake.backlog_limit", 0.0),
        ("intake.ttl_s", 3600.0),
        ("queue.visibility_timeout_s", 180.0),
        ("queue.max_receive_count", 20.0),
        ("queue.retention_s", 345_600.0),
        ("queue.age_alarm_s", 300.0),
        ("consumer.batch_size", 10.0),
        ("consumer.batching_window_s", 0.0),
        ("consumer.maximum_concurrency", 10.0),
        ("consumer.timeout_s", 30.0),
        ("consumer.record_concurrency", 10.0),
        ("consumer.max_attempts", 5.0),
        ("consumer.backoff_base_s", 2.0),
        ("consumer.backoff_max_s", 900.0),
        ("clients.status_throttle_rate", 50.0),
    ];
    let found: Vec<(&str, f64)> = taken.values().map(|t| (t.field, t.value)).collect();
    let mut expected_sorted = expected.to_vec();
    expected_sorted.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(found, expected_sorted);
    assert_eq!(
        taken["consumer.batch_size"].source,
        "ConsumerFunction.Properties.Events.Work.Properties.BatchSize = !Ref ConsumerBatchSize; \
         ConsumerBatchSize = 10 by default"
    );
    assert_eq!(
        taken["queue.visibility_timeout_s"].source,
        "WorkQueue.Properties.VisibilityTimeout = !FindInMap [ConsumerTimeouts, !Ref \
         ConsumerTimeoutSeconds, VisibilityTimeout]; ConsumerTimeoutSeconds = 30 by default"
    );
    assert_eq!(
        taken["clients.status_throttle_rate"].source,
        "HttpApi.Properties.RouteSettings.GET /jobs/{id}.ThrottlingRateLimit = !Ref \
         StatusThrottlingRateLimit; StatusThrottlingRateLimit = 50 by default"
    );
    assert_eq!(
        taken["queue.retention_s"].source,
        "WorkQueue.Properties.MessageRetentionPeriod = 345600"
    );
}

#[test]
fn a_param_reaches_every_value_the_template_derives_from_it() {
    let taken = values(DEPLOYED, &[("ConsumerBatchSize", "5")]);
    assert_eq!(taken["consumer.batch_size"].value, 5.0);
    // The template runs every record of a batch at once.
    assert_eq!(taken["consumer.record_concurrency"].value, 5.0);
    assert!(
        taken["consumer.batch_size"]
            .source
            .ends_with("ConsumerBatchSize = 5 from --param"),
        "{}",
        taken["consumer.batch_size"].source
    );

    let taken = values(
        DEPLOYED,
        &[("ConsumerTimeoutSeconds", "60"), ("BacklogLimit", "5000")],
    );
    assert_eq!(taken["consumer.timeout_s"].value, 60.0);
    assert_eq!(taken["queue.visibility_timeout_s"].value, 360.0);
    assert_eq!(taken["intake.backlog_limit"].value, 5000.0);

    let taken = values(DEPLOYED, &[("MaxAttempts", "7"), ("MaxReceiveCount", "30")]);
    assert_eq!(taken["consumer.max_attempts"].value, 7.0);
    assert_eq!(taken["queue.max_receive_count"].value, 30.0);

    // The queue-age alarm's threshold, found by its metric and its queue.
    let taken = values(DEPLOYED, &[("QueueAgeAlarmSeconds", "120")]);
    assert_eq!(taken["queue.age_alarm_s"].value, 120.0);
    assert_eq!(
        taken["queue.age_alarm_s"].source,
        "QueueAgeAlarm.Properties.Threshold = !Ref QueueAgeAlarmSeconds; QueueAgeAlarmSeconds = \
         120 from --param"
    );
}

#[test]
fn an_unknown_param_is_refused_with_the_known_ones() {
    let message = error(DEPLOYED, &[("ConsumerBatchSise", "5")]);
    assert!(
        message.starts_with("--param ConsumerBatchSise: the template has no such parameter"),
        "{message}"
    );
    assert!(message.contains("ConsumerBatchSize, "), "{message}");
}

#[test]
fn a_param_its_declaration_refuses_is_named_with_the_rule() {
    assert_eq!(
        error(DEPLOYED, &[("ConsumerBatchSize", "50")]),
        "parameter ConsumerBatchSize: 50 is above its MaxValue, 10"
    );
    assert_eq!(
        error(DEPLOYED, &[("ConsumerMaxConcurrency", "1")]),
        "parameter ConsumerMaxConcurrency: 1 is below its MinValue, 2"
    );
    let message = error(DEPLOYED, &[("ConsumerTimeoutSeconds", "61")]);
    assert!(
        message.starts_with(
            "parameter ConsumerTimeoutSeconds: `61` is not one of its AllowedValues: 10, 15"
        ),
        "{message}"
    );
    assert_eq!(
        error(DEPLOYED, &[("MaxAttempts", "five")]),
        "parameter MaxAttempts: `five` is not a number (its Type is Number)"
    );
    assert_eq!(
        error(SMALL, &[("Size", "huge")]),
        "parameter Size: `huge` is not one of its AllowedValues: small, big"
    );
    assert_eq!(
        error(SMALL, &[("Size", "big"), ("Size", "small")]),
        "parameter Size: given twice with --param"
    );
}

#[test]
fn a_combination_the_functions_refuse_is_refused() {
    // Each parameter is in range; together the consumer would not start.
    let message = error(DEPLOYED, &[("MaxAttempts", "20")]);
    assert!(
        message.starts_with(
            "ConsumerFunction.Properties.Environment.Variables: SPILLWAY_MAX_RECEIVE_COUNT: 20 \
             leaves no receive above SPILLWAY_MAX_ATTEMPTS (20)"
        ),
        "{message}"
    );
}

#[test]
fn conditions_over_parameters_are_evaluated() {
    let template = small_with("BatchSize: 10", "BatchSize: !If [IsBig, 10, 2]");
    assert_eq!(value(&template, &[], "consumer.batch_size"), 2.0);
    assert_eq!(
        value(&template, &[("Size", "big")], "consumer.batch_size"),
        10.0
    );
    let source = &values(&template, &[])["consumer.batch_size"].source;
    assert_eq!(
        source,
        "Consumer.Properties.Events.Work.Properties.BatchSize = !If [IsBig, 10, 2]; \
         Size = small by default"
    );

    let template = small_with("BatchSize: 10", "BatchSize: {\"Fn::If\": [Either, 3, 4]}");
    assert_eq!(value(&template, &[], "consumer.batch_size"), 3.0);
    let template = small_with(
        "BatchSize: 10",
        "BatchSize: !If [IsSmall, !Ref AWS::NoValue, 4]",
    );
    // Left out: Lambda's default.
    let taken = values(&template, &[]);
    assert_eq!(taken["consumer.batch_size"].value, 10.0);
    assert!(
        taken["consumer.batch_size"]
            .source
            .ends_with("sets no BatchSize: Lambda's default for SQS"),
        "{}",
        taken["consumer.batch_size"].source
    );
}

#[test]
fn sub_find_in_map_and_globals_are_followed() {
    let template = small_with(
        "SPILLWAY_MAX_ATTEMPTS: !Ref Attempts",
        "SPILLWAY_MAX_ATTEMPTS: !Sub \"${Attempts}\"",
    );
    assert_eq!(
        value(&template, &[("Attempts", "3")], "consumer.max_attempts"),
        3.0
    );
    // The consumer's timeout is only in Globals.
    let taken = values(SMALL, &[]);
    assert_eq!(taken["consumer.timeout_s"].value, 40.0);
    assert_eq!(
        taken["consumer.timeout_s"].source,
        "Globals.Function.Timeout = 40"
    );
    // Variables the consumer is not given keep its own defaults.
    assert_eq!(taken["consumer.backoff_max_s"].value, 900.0);
    assert_eq!(
        taken["consumer.backoff_max_s"].source,
        "Consumer sets no SPILLWAY_BACKOFF_MAX_SECONDS: the function's own default"
    );
}

#[test]
fn a_value_known_only_once_deployed_is_an_error_naming_where_it_is() {
    let template = small_with("BatchSize: 10", "BatchSize: !GetAtt Queue.Arn");
    assert_eq!(
        error(&template, &[]),
        "Consumer.Properties.Events.Work.Properties.BatchSize: !GetAtt Queue.Arn is an \
         attribute AWS gives a resource once it is created"
    );
    let template = small_with("BatchSize: 10", "BatchSize: !Join [\"\", [\"1\", \"0\"]]");
    let message = error(&template, &[]);
    assert!(
        message.starts_with(
            "Consumer.Properties.Events.Work.Properties.BatchSize: the simulator does not \
             evaluate Fn::Join"
        ),
        "{message}"
    );
    let template = small_with(
        "VisibilityTimeout: 240",
        "VisibilityTimeout: !Ref AWS::Region",
    );
    assert_eq!(
        error(&template, &[]),
        "Queue.Properties.VisibilityTimeout: AWS::Region depends on the account and region \
         deployed to"
    );
    let template = small_with("BatchSize: 10", "BatchSize: !Ref Required");
    assert_eq!(
        error(&template, &[]),
        "parameter Required: has no Default: give it with --param Required=VALUE"
    );
    assert_eq!(
        value(&template, &[("Required", "7")], "consumer.batch_size"),
        7.0
    );
}

#[test]
fn what_the_simulator_cannot_model_is_refused_not_guessed() {
    let template = small_with("maxReceiveCount: 20", "maxReceiveCount: 12");
    let message = error(&template, &[]);
    assert!(
        message.contains("the consumer counts on a maxReceiveCount of 20"),
        "{message}"
    );

    let template = small_with("ThrottlingRateLimit: 70", "ThrottlingRateLimit: 0");
    let message = error(&template, &[]);
    assert!(
        message.starts_with(
            "Api.Properties.DefaultRouteSettings.ThrottlingRateLimit: 0 makes API Gateway refuse"
        ),
        "{message}"
    );

    let template = small_with(
        "      Events:\n        Work:",
        "      ReservedConcurrentExecutions: 5\n      Events:\n        Work:",
    );
    let message = error(&template, &[]);
    assert!(
        message.starts_with("Consumer.Properties.ReservedConcurrentExecutions: 5 is below"),
        "{message}"
    );

    let template = small_with(
        "            ScalingConfig:\n              MaximumConcurrency: 20\n",
        "",
    );
    let message = error(&template, &[]);
    assert!(
        message.contains("no ScalingConfig.MaximumConcurrency"),
        "{message}"
    );

    let template = small_with(
        "Queue: !GetAtt Queue.Arn",
        "Queue: arn:aws:sqs:eu-west-1:123456789012:jobs",
    );
    let message = error(&template, &[]);
    assert!(
        message.starts_with("Consumer.Properties.Events.Work.Properties.Queue: "),
        "{message}"
    );
}

#[test]
fn a_route_without_a_throttle_is_not_throttled_by_its_api() {
    let template = small_with(
        "      DefaultRouteSettings:\n        ThrottlingRateLimit: 70\n        ThrottlingBurstLimit: 140\n",
        "      CorsConfiguration: true\n",
    );
    let taken = values(&template, &[]);
    assert_eq!(taken["intake.throttle_rate"].value, 0.0);
    assert_eq!(taken["clients.status_throttle_rate"].value, 0.0);
    assert!(
        taken["intake.throttle_rate"]
            .source
            .starts_with("Api sets no throttle for POST /jobs"),
        "{}",
        taken["intake.throttle_rate"].source
    );
}

#[test]
fn a_route_setting_overrides_the_default_route_settings() {
    let template = small_with(
        "      DefaultRouteSettings:",
        "      RouteSettings:\n        \"GET /jobs/{id}\":\n          ThrottlingRateLimit: 9\n      DefaultRouteSettings:",
    );
    let taken = values(&template, &[]);
    assert_eq!(taken["clients.status_throttle_rate"].value, 9.0);
    assert_eq!(taken["intake.throttle_rate"].value, 70.0);
}

#[test]
fn a_separate_event_source_mapping_is_read_like_a_sam_event() {
    let template = small_with("          Type: SQS\n", "          Type: Schedule\n")
        + "  Mapping:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties:\n      \
           FunctionName: !Ref Consumer\n      EventSourceArn: !GetAtt Queue.Arn\n      \
           BatchSize: 4\n      ScalingConfig:\n        MaximumConcurrency: 30\n";
    let taken = values(&template, &[]);
    assert_eq!(taken["consumer.batch_size"].value, 4.0);
    assert_eq!(taken["consumer.maximum_concurrency"].value, 30.0);
    assert_eq!(
        taken["consumer.batch_size"].source,
        "Mapping.Properties.BatchSize = 4"
    );
}

#[test]
fn a_resource_counts_only_when_its_condition_holds() {
    let template = SMALL.to_owned()
        + "  OtherConsumer:\n    Type: AWS::Serverless::Function\n    Condition: IsBig\n    \
           Metadata:\n      BuildProperties:\n        Binary: consumer\n";
    assert_eq!(value(&template, &[], "consumer.batch_size"), 10.0);
    assert_eq!(
        error(&template, &[("Size", "big")]),
        "Resources: Consumer, OtherConsumer all build the `consumer` binary for the normal lane \
         (SPILLWAY_PRIORITY normal or unset): the simulator models one"
    );
}

#[test]
fn the_normal_lanes_consumer_is_the_one_modelled() {
    let template = SMALL.to_owned()
        + "  HighConsumer:\n    Type: AWS::Serverless::Function\n    Metadata:\n      \
           BuildProperties:\n        Binary: consumer\n    Properties:\n      Timeout: 7\n      \
           Environment:\n        Variables:\n          SPILLWAY_PRIORITY: high\n";
    let taken = values(&template, &[]);
    assert_eq!(
        taken["consumer.timeout_s"].value, 40.0,
        "Consumer's, not HighConsumer's"
    );
    let named_normal = template.replace(
        "          SPILLWAY_MAX_ATTEMPTS: !Ref Attempts\n",
        "          SPILLWAY_MAX_ATTEMPTS: !Ref Attempts\n          SPILLWAY_PRIORITY: normal\n",
    );
    assert_eq!(value(&named_normal, &[], "consumer.timeout_s"), 40.0);
    let both_high = named_normal.replace("PRIORITY: normal", "PRIORITY: high");
    assert_eq!(
        error(&both_high, &[]),
        "Resources: no function builds the `consumer` binary for the normal lane \
         (SPILLWAY_PRIORITY normal or unset) (Metadata.BuildProperties.Binary)"
    );
}
