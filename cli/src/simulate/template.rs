//! `--from-template`: what a SAM template deploys, for each scenario field it has a say in, and
//! where each value came from.
//!
//! The template is read as CloudFormation and SAM would read it, for the resources the simulation
//! models: a parameter takes its `--param` (checked against its declaration) or its default;
//! values may use `Ref`, `Fn::FindInMap`, `Fn::Sub` and `Fn::If` over conditions (`Fn::Equals`,
//! `Fn::Not`, `Fn::And`, `Fn::Or`); a function's property it leaves out comes from SAM's
//! `Globals`, and then from AWS's own default. A value that needs anything else (an attribute
//! known once deployed, the region, `Fn::Join`…) is an error naming where it is: the simulation
//! never guesses a setting.
//!
//! What it reads is found by the template's structure, not by parameter names, so that the model
//! follows an edited template: the functions by the binary they build
//! (`Metadata.BuildProperties.Binary`, as the deployment test finds them), the work queue as the
//! one the consumer's SQS event source reads, the throttles on the HTTP API routes of
//! `POST /jobs` and `GET /jobs/{id}`, and the functions' `SPILLWAY_*` variables read as the
//! functions themselves read them ([`Settings::from_lookup`]).
//!
//! The simulation models one priority lane: the normal one, which a job takes unless it asks for
//! `high`. Its consumer is the function building the `consumer` binary whose `SPILLWAY_PRIORITY`
//! is `normal` (or unset, the consumer's default); a template deploys one consumer per lane.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_norway::{Mapping, Value};
use spillway_core::config::{Function, Settings};

const SERVERLESS_FUNCTION: &str = "AWS::Serverless::Function";
const LAMBDA_FUNCTION: &str = "AWS::Lambda::Function";
const EVENT_SOURCE_MAPPING: &str = "AWS::Lambda::EventSourceMapping";
const QUEUE: &str = "AWS::SQS::Queue";
const ALARM: &str = "AWS::CloudWatch::Alarm";
const HTTP_API: &str = "AWS::Serverless::HttpApi";
/// Conditions naming conditions deeper than this are taken for a loop.
const MAX_CONDITION_DEPTH: usize = 64;

/// A scenario field as the template deploys it.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The scenario field, dotted: `consumer.batch_size`.
    pub field: &'static str,
    /// Its value, in the field's unit (seconds, a count, requests per second).
    pub value: f64,
    /// Where it came from: the property with its expression, and the parameters that expression
    /// read; or why the template leaves it to a default.
    pub source: String,
}

/// Why the template cannot say what it deploys.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Not YAML.
    #[error("not a YAML template: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// A `--param` for a parameter the template does not declare.
    #[error("--param {name}: the template has no such parameter; it has {}", known.join(", "))]
    UnknownParameter { name: String, known: Vec<String> },
    /// A parameter's value that its declaration refuses, or that it lacks.
    #[error("parameter {name}: {problem}")]
    Parameter { name: String, problem: String },
    /// A value the simulator cannot evaluate, or a resource it cannot find.
    #[error("{at}: {problem}")]
    Unresolved { at: String, problem: String },
}

fn unresolved(at: impl Into<String>, problem: impl Into<String>) -> TemplateError {
    TemplateError::Unresolved {
        at: at.into(),
        problem: problem.into(),
    }
}

/// The scenario fields `template` (the text of a SAM template) deploys, in the scenario file's
/// order, with `params` (`--param NAME=VALUE`) overriding its parameters' defaults.
pub fn read(template: &str, params: &[(String, String)]) -> Result<Vec<Taken>, TemplateError> {
    let root: Value = serde_norway::from_str(template)?;
    let template = Template::new(&root, params)?;
    let mut taken = template.intake()?;
    taken.extend(template.queue_and_consumer()?);
    taken.extend(template.status()?);
    Ok(taken)
}

/// Where a parameter's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Default,
    Given,
}

/// A declared parameter.
#[derive(Debug)]
struct Parameter {
    /// Its `--param` or its default; `None` when it has neither.
    value: Option<String>,
    origin: Origin,
    /// A `CommaDelimitedList` or `List<…>`, whose `Ref` is a list and never one value.
    list: bool,
}

/// The text of a scalar: what `Ref` and `Fn::Equals` see.
fn literal(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The template's parameters with their values: `given` over the defaults, each checked against
/// its declaration.
fn parameters(
    declared: &Value,
    given: &[(String, String)],
) -> Result<BTreeMap<String, Parameter>, TemplateError> {
    let empty = Mapping::new();
    let declared = match declared {
        Value::Mapping(declared) => declared,
        Value::Null => &empty,
        _ => return Err(unresolved("Parameters", "is not a map")),
    };
    let known: Vec<String> = declared.keys().filter_map(literal).collect();
    for (i, (name, _)) in given.iter().enumerate() {
        if !known.contains(name) {
            return Err(TemplateError::UnknownParameter {
                name: name.clone(),
                known,
            });
        }
        if given[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(TemplateError::Parameter {
                name: name.clone(),
                problem: "given twice with --param".to_owned(),
            });
        }
    }
    let mut parameters = BTreeMap::new();
    for (name, declaration) in declared {
        let Some(name) = literal(name) else { continue };
        let kind = declaration["Type"].as_str().unwrap_or("String");
        let (value, origin) = match given.iter().find(|(given, _)| *given == name) {
            Some((_, value)) => (Some(value.clone()), Origin::Given),
            None => (literal(&declaration["Default"]), Origin::Default),
        };
        if let Some(value) = &value {
            check(declaration, kind, value).map_err(|problem| TemplateError::Parameter {
                name: name.clone(),
                problem: match origin {
                    Origin::Given => problem,
                    Origin::Default => format!("its Default: {problem}"),
                },
            })?;
        }
        let list = kind == "CommaDelimitedList" || kind.starts_with("List<");
        parameters.insert(
            name,
            Parameter {
                value,
                origin,
                list,
            },
        );
    }
    Ok(parameters)
}

/// Whether `value` is one `declaration` allows: its `Type` (`kind`), `MinValue`, `MaxValue`,
/// `MinLength`, `MaxLength` and `AllowedValues`, as CloudFormation checks them before a deploy.
/// `AllowedPattern` is left to CloudFormation: no parameter the simulation reads has one.
fn check(declaration: &Value, kind: &str, value: &str) -> Result<(), String> {
    let bound = |key: &str| literal(&declaration[key]).and_then(|text| parse_number(&text));
    if kind == "Number" {
        let Some(number) = parse_number(value) else {
            return Err(format!("`{value}` is not a number (its Type is Number)"));
        };
        if let Some(min) = bound("MinValue")
            && number < min
        {
            return Err(format!("{value} is below its MinValue, {min}"));
        }
        if let Some(max) = bound("MaxValue")
            && number > max
        {
            return Err(format!("{value} is above its MaxValue, {max}"));
        }
    }
    if kind == "List<Number>" && value.split(',').any(|item| parse_number(item).is_none()) {
        return Err(format!(
            "`{value}` is not a comma-separated list of numbers (its Type is List<Number>)"
        ));
    }
    if kind == "String" {
        let length = value.chars().count() as f64;
        if let Some(min) = bound("MinLength")
            && length < min
        {
            return Err(format!("`{value}` is shorter than its MinLength, {min}"));
        }
        if let Some(max) = bound("MaxLength")
            && length > max
        {
            return Err(format!("`{value}` is longer than its MaxLength, {max}"));
        }
    }
    if let Value::Sequence(allowed) = &declaration["AllowedValues"] {
        let allowed: Vec<String> = allowed.iter().filter_map(literal).collect();
        let allows = |candidate: &String| {
            if kind == "Number" {
                parse_number(candidate) == parse_number(value)
            } else {
                candidate == value
            }
        };
        if !allowed.iter().any(allows) {
            return Err(format!(
                "`{value}` is not one of its AllowedValues: {}",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// The intrinsic function `value` calls, by its long name (`Ref`, `Condition`, `Fn::If`), and
/// its argument; in short form (`!If [...]`) or long (`{"Fn::If": [...]}`).
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let name = match name {
                "Ref" | "Condition" => name.to_owned(),
                _ => format!("Fn::{name}"),
            };
            Some((name, &tagged.value))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next()?;
            let key = key.as_str()?;
            (key == "Ref" || key == "Condition" || key.starts_with("Fn::"))
                .then(|| (key.to_owned(), argument))
        }
        _ => None,
    }
}

/// The resource and attribute `value` names with `Fn::GetAtt`.
fn get_att(value: &Value) -> Option<(&str, &str)> {
    let (function, argument) = intrinsic(value)?;
    if function != "Fn::GetAtt" {
        return None;
    }
    match argument {
        Value::String(text) => text.split_once('.'),
        Value::Sequence(items) => match items.as_slice() {
            [id, attribute] => Some((id.as_str()?, attribute.as_str()?)),
            _ => None,
        },
        _ => None,
    }
}

/// The resource `value` names with `Ref` or `Fn::GetAtt`.
fn named_resource(value: &Value) -> Option<&str> {
    if let Some((id, _)) = get_att(value) {
        return Some(id);
    }
    match intrinsic(value)? {
        (function, Value::String(id)) if function == "Ref" => Some(id),
        _ => None,
    }
}

/// `value` as the template writes it, on one line, intrinsics in short form.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(text) if text.is_empty() => "\"\"".to_owned(),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(map) => match intrinsic(value) {
            Some((function, argument)) => {
                let short = function.trim_start_matches("Fn::");
                format!("!{short} {}", render(argument))
            }
            None => {
                let entries: Vec<String> = map
                    .iter()
                    .map(|(key, value)| format!("{}: {}", render(key), render(value)))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
        },
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, render(&tagged.value)),
        scalar => literal(scalar).unwrap_or_default(),
    }
}

/// A resource a deploy creates.
#[derive(Debug, Clone, Copy)]
struct Resource<'t> {
    id: &'t str,
    kind: &'t str,
    body: &'t Value,
}

/// A value the template sets: its text, where it is, and where it came from.
#[derive(Debug)]
struct Setting {
    text: String,
    at: String,
    source: String,
}

impl Setting {
    fn number(&self) -> Result<f64, TemplateError> {
        parse_number(&self.text)
            .ok_or_else(|| unresolved(&self.at, format!("`{}` is not a number", self.text)))
    }

    fn taken(&self, field: &'static str) -> Result<Taken, TemplateError> {
        Ok(Taken {
            field,
            value: self.number()?,
            source: self.source.clone(),
        })
    }
}

/// An HTTP API route of a function.
#[derive(Debug)]
struct Route<'t> {
    /// `POST /jobs`, as `RouteSettings` keys it.
    key: String,
    /// The API; `None` for SAM's implicit one, which only `Globals.HttpApi` configures.
    api: Option<Resource<'t>>,
}

impl Route<'_> {
    /// A throttle value as a field's: a route without one is not throttled by its API; a limit
    /// of 0 refuses every request, which the simulator's 0 (no throttle) cannot say.
    fn taken(&self, field: &'static str, setting: Option<Setting>) -> Result<Taken, TemplateError> {
        let Some(setting) = setting else {
            let api = self.api.map_or("SAM's implicit HTTP API", |api| api.id);
            return Ok(Taken {
                field,
                value: 0.0,
                source: format!(
                    "{api} sets no throttle for {}: only the account's limit applies, which the simulation leaves out",
                    self.key
                ),
            });
        };
        let taken = setting.taken(field)?;
        if taken.value == 0.0 {
            return Err(unresolved(
                &setting.at,
                format!(
                    "0 makes API Gateway refuse every {} request, which the simulator does not model (its 0 turns the throttle off)",
                    self.key
                ),
            ));
        }
        Ok(taken)
    }
}

/// The consumer's SQS event source: a SAM `SQS` event of the function, or an
/// `AWS::Lambda::EventSourceMapping` naming it.
#[derive(Debug)]
struct EventSource<'t> {
    /// Where its properties are.
    at: String,
    properties: &'t Value,
    /// The queue's ARN, as written, and where.
    queue: &'t Value,
    queue_at: String,
}

/// The `SPILLWAY_*` variables a function was given, with where each came from; `None` for one
/// it was not given.
#[derive(Debug)]
struct Variables<'t> {
    function: Resource<'t>,
    given: BTreeMap<&'static str, Option<Setting>>,
}

impl Variables<'_> {
    /// `field`, which the function's variable `name` sets, at `value` as the function read it.
    fn taken(&self, field: &'static str, name: &'static str, value: f64) -> Taken {
        let source = match self.given.get(name).and_then(Option::as_ref) {
            Some(setting) => setting.source.clone(),
            None => format!(
                "{} sets no {name}: the function's own default",
                self.function.id
            ),
        };
        Taken {
            field,
            value,
            source,
        }
    }
}

/// A template's sections, with its parameters' values.
struct Template<'t> {
    parameters: BTreeMap<String, Parameter>,
    mappings: &'t Value,
    conditions: &'t Value,
    globals: &'t Value,
    resources: &'t Mapping,
}

impl<'t> Template<'t> {
    fn new(root: &'t Value, given: &[(String, String)]) -> Result<Self, TemplateError> {
        let Value::Mapping(resources) = &root["Resources"] else {
            return Err(unresolved(
                "Resources",
                "missing: not a CloudFormation template",
            ));
        };
        Ok(Self {
            parameters: parameters(&root["Parameters"], given)?,
            mappings: &root["Mappings"],
            conditions: &root["Conditions"],
            globals: &root["Globals"],
            resources,
        })
    }

    /// The `intake.*` fields: `POST /jobs`'s throttle, and the intake function's settings.
    fn intake(&self) -> Result<Vec<Taken>, TemplateError> {
        let mut taken = Vec::new();
        let intake = self.function(Function::Intake)?;
        let submit = self.route(intake, "POST", "/jobs")?;
        let rate = self.throttle(&submit, "ThrottlingRateLimit")?;
        let burst = self.throttle(&submit, "ThrottlingBurstLimit")?;
        if let (Some(rate), None) = (&rate, &burst) {
            return Err(unresolved(
                &rate.at,
                format!(
                    "{} has a rate limit but no ThrottlingBurstLimit: the simulator needs the bucket's size",
                    submit.key
                ),
            ));
        }
        taken.push(submit.taken("intake.throttle_rate", rate)?);
        taken.push(submit.taken("intake.throttle_burst", burst)?);
        let variables = [
            "SPILLWAY_BACKLOG_LIMIT",
            "SPILLWAY_DEFAULT_TTL_SECONDS",
            // Read only because intake refuses a default TTL above it.
            "SPILLWAY_MAX_TTL_SECONDS",
        ];
        let (settings, given) = self.settings(intake, &variables)?;
        taken.push(given.taken(
            "intake.backlog_limit",
            "SPILLWAY_BACKLOG_LIMIT",
            settings.backlog_limit.normal as f64,
        ));
        taken.push(given.taken(
            "intake.ttl_s",
            "SPILLWAY_DEFAULT_TTL_SECONDS",
            settings.default_ttl.normal.as_secs_f64(),
        ));
        Ok(taken)
    }

    /// The `queue.*` and `consumer.*` fields: the queue the consumer's event source reads, the
    /// event source, and the consumer function.
    fn queue_and_consumer(&self) -> Result<Vec<Taken>, TemplateError> {
        let mut taken = Vec::new();
        let consumer = self.normal_consumer()?;
        let source = self.event_source(consumer)?;
        let queue = self.queue(&source)?;
        let properties = &queue.body["Properties"];
        let at = format!("{}.Properties", queue.id);
        taken.push(self.number_or(
            "queue.visibility_timeout_s",
            properties,
            &at,
            &["VisibilityTimeout"],
            (30.0, "SQS's default"),
        )?);
        let max_receive_count = self
            .number(properties, &at, &["RedrivePolicy", "maxReceiveCount"])?
            .ok_or_else(|| {
                unresolved(
                    &at,
                    "no RedrivePolicy.maxReceiveCount: without a dead-letter queue SQS delivers a failing message until its retention ends, which the simulator does not model",
                )
            })?;
        taken.push(max_receive_count.taken("queue.max_receive_count")?);
        taken.push(self.number_or(
            "queue.retention_s",
            properties,
            &at,
            &["MessageRetentionPeriod"],
            (345_600.0, "SQS's default"),
        )?);

        taken.push(self.number_or(
            "consumer.batch_size",
            source.properties,
            &source.at,
            &["BatchSize"],
            (10.0, "Lambda's default for SQS"),
        )?);
        taken.push(self.number_or(
            "consumer.batching_window_s",
            source.properties,
            &source.at,
            &["MaximumBatchingWindowInSeconds"],
            (0.0, "Lambda's default for SQS"),
        )?);
        let maximum = self
            .number(
                source.properties,
                &source.at,
                &["ScalingConfig", "MaximumConcurrency"],
            )?
            .ok_or_else(|| {
                unresolved(
                    &source.at,
                    "no ScalingConfig.MaximumConcurrency: the simulator needs the most invocations the mapping may run at once",
                )
            })?;
        let maximum = maximum.taken("consumer.maximum_concurrency")?;
        if let Some(reserved) =
            self.function_setting(consumer, &["ReservedConcurrentExecutions"])?
            && reserved.number()? < maximum.value
        {
            return Err(unresolved(
                &reserved.at,
                format!(
                    "{} is below the mapping's MaximumConcurrency ({}): Lambda would throttle the mapping's invocations, which the simulator does not model",
                    reserved.text, maximum.value
                ),
            ));
        }
        taken.push(maximum);
        let timeout = match self.function_setting(consumer, &["Timeout"])? {
            Some(timeout) => timeout.taken("consumer.timeout_s")?,
            None => Taken {
                field: "consumer.timeout_s",
                value: 3.0,
                source: format!("{} sets no Timeout: Lambda's default", consumer.id),
            },
        };
        taken.push(timeout);
        let variables = [
            "SPILLWAY_CONSUMER_CONCURRENCY",
            "SPILLWAY_MAX_ATTEMPTS",
            "SPILLWAY_MAX_RECEIVE_COUNT",
            "SPILLWAY_BACKOFF_BASE_SECONDS",
            "SPILLWAY_BACKOFF_MAX_SECONDS",
        ];
        let (settings, given) = self.settings(consumer, &variables)?;
        if f64::from(settings.max_receive_count) != max_receive_count.number()? {
            return Err(unresolved(
                format!("{}.Properties.Environment.Variables", consumer.id),
                format!(
                    "the consumer counts on a maxReceiveCount of {} (SPILLWAY_MAX_RECEIVE_COUNT) but {} sets {}: the simulator models one",
                    settings.max_receive_count, max_receive_count.at, max_receive_count.text
                ),
            ));
        }
        taken.push(given.taken(
            "consumer.record_concurrency",
            "SPILLWAY_CONSUMER_CONCURRENCY",
            settings.consumer_concurrency as f64,
        ));
        taken.push(given.taken(
            "consumer.max_attempts",
            "SPILLWAY_MAX_ATTEMPTS",
            f64::from(settings.max_attempts),
        ));
        taken.push(given.taken(
            "consumer.backoff_base_s",
            "SPILLWAY_BACKOFF_BASE_SECONDS",
            settings.backoff_base.as_secs_f64(),
        ));
        taken.push(given.taken(
            "consumer.backoff_max_s",
            "SPILLWAY_BACKOFF_MAX_SECONDS",
            settings.backoff_max.as_secs_f64(),
        ));
        if let Some(alarm) = self.age_alarm(&queue)? {
            taken.push(alarm.taken("queue.age_alarm_s")?);
        }
        Ok(taken)
    }

    /// The threshold of the alarm on the age of `queue`'s oldest message (the alarm whose
    /// `ApproximateAgeOfOldestMessage` has the dimension `QueueName: !GetAtt queue.QueueName`);
    /// `None` when the template has no such alarm.
    fn age_alarm(&self, queue: &Resource<'t>) -> Result<Option<Setting>, TemplateError> {
        let alarms = self.resources_of(&[ALARM], |_, body| {
            let properties = &body["Properties"];
            properties["MetricName"].as_str() == Some("ApproximateAgeOfOldestMessage")
                && properties["Dimensions"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|dimension| {
                        dimension["Name"].as_str() == Some("QueueName")
                            && get_att(&dimension["Value"]) == Some((queue.id, "QueueName"))
                    })
        })?;
        let Some(alarm) = alarms.first() else {
            return Ok(None);
        };
        let at = format!("{}.Properties", alarm.id);
        self.number(&alarm.body["Properties"], &at, &["Threshold"])
    }

    /// `clients.status_throttle_rate`: `GET /jobs/{id}`'s throttle.
    fn status(&self) -> Result<Vec<Taken>, TemplateError> {
        let status = self.function(Function::Status)?;
        let poll = self.route(status, "GET", "/jobs/{id}")?;
        let rate = self.throttle(&poll, "ThrottlingRateLimit")?;
        Ok(vec![poll.taken("clients.status_throttle_rate", rate)?])
    }

    /// The resources of one of `kinds` that `wanted` picks and a deploy creates: those whose
    /// `Condition`, if any, holds. Only the conditions of those picked are evaluated.
    fn resources_of(
        &self,
        kinds: &[&str],
        wanted: impl Fn(&str, &Value) -> bool,
    ) -> Result<Vec<Resource<'t>>, TemplateError> {
        let mut found = Vec::new();
        for (id, body) in self.resources {
            let (Some(id), Some(kind)) = (id.as_str(), body["Type"].as_str()) else {
                continue;
            };
            if !kinds.contains(&kind) || !wanted(id, body) {
                continue;
            }
            if let Some(condition) = body["Condition"].as_str()
                && !self.condition(condition, &mut Vec::new(), 0)?
            {
                continue;
            }
            found.push(Resource { id, kind, body });
        }
        Ok(found)
    }

    /// The resource `id`, if the deploy creates one of `kind` by that name.
    fn resource(&self, id: &str, kind: &str) -> Result<Option<Resource<'t>>, TemplateError> {
        Ok(self
            .resources_of(&[kind], |candidate, _| candidate == id)?
            .pop())
    }

    /// The function that builds `binary`: exactly one must.
    fn function(&self, binary: Function) -> Result<Resource<'t>, TemplateError> {
        Self::one(&self.functions(binary)?, binary, "")
    }

    /// Every function the deploy creates that builds `binary`.
    fn functions(&self, binary: Function) -> Result<Vec<Resource<'t>>, TemplateError> {
        let name = binary.binary();
        self.resources_of(&[SERVERLESS_FUNCTION, LAMBDA_FUNCTION], |_, body| {
            body["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(name)
        })
    }

    /// The normal lane's consumer: of the functions building the `consumer` binary, the one
    /// whose `SPILLWAY_PRIORITY` is `normal` or unset. Exactly one must be.
    fn normal_consumer(&self) -> Result<Resource<'t>, TemplateError> {
        let mut normal = Vec::new();
        for consumer in self.functions(Function::Consumer)? {
            let priority = self
                .function_setting(consumer, &["Environment", "Variables", "SPILLWAY_PRIORITY"])?;
            if priority.is_none_or(|priority| priority.text == "normal") {
                normal.push(consumer);
            }
        }
        Self::one(
            &normal,
            Function::Consumer,
            " for the normal lane (SPILLWAY_PRIORITY normal or unset)",
        )
    }

    /// The one function of `found`, the functions building `binary` (`lane` says which of them
    /// were wanted).
    fn one(
        found: &[Resource<'t>],
        binary: Function,
        lane: &str,
    ) -> Result<Resource<'t>, TemplateError> {
        let name = binary.binary();
        match found {
            [one] => Ok(*one),
            [] => Err(unresolved(
                "Resources",
                format!(
                    "no function builds the `{name}` binary{lane} (Metadata.BuildProperties.Binary)"
                ),
            )),
            several => {
                let ids: Vec<&str> = several.iter().map(|function| function.id).collect();
                Err(unresolved(
                    "Resources",
                    format!(
                        "{} all build the `{name}` binary{lane}: the simulator models one",
                        ids.join(", ")
                    ),
                ))
            }
        }
    }

    /// The one value `value` evaluates to; `None` for `AWS::NoValue`. `reads` gathers the
    /// parameters it read.
    fn scalar(
        &self,
        value: &'t Value,
        at: &str,
        reads: &mut Vec<String>,
    ) -> Result<Option<String>, TemplateError> {
        if let Some((function, argument)) = intrinsic(value) {
            return match function.as_str() {
                "Ref" => {
                    let name = argument
                        .as_str()
                        .ok_or_else(|| unresolved(at, "!Ref names no string"))?;
                    self.reference(name, at, reads)
                }
                "Fn::If" => {
                    let branch = self.choose(argument, at, reads)?;
                    self.scalar(branch, at, reads)
                }
                "Fn::FindInMap" => self.find_in_map(argument, at, reads).map(Some),
                "Fn::Sub" => self.substitute(argument, at, reads).map(Some),
                "Fn::GetAtt" => Err(unresolved(
                    at,
                    format!(
                        "{} is an attribute AWS gives a resource once it is created",
                        render(value)
                    ),
                )),
                other => Err(unresolved(
                    at,
                    format!(
                        "the simulator does not evaluate {other}: write the value, or use !Ref, !Sub, !FindInMap or !If over parameters"
                    ),
                )),
            };
        }
        literal(value)
            .map(Some)
            .ok_or_else(|| unresolved(at, format!("expected one value, found {}", render(value))))
    }

    /// A parameter's value by `Ref`; `None` for `AWS::NoValue`.
    fn reference(
        &self,
        name: &str,
        at: &str,
        reads: &mut Vec<String>,
    ) -> Result<Option<String>, TemplateError> {
        if name == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(parameter) = self.parameters.get(name) {
            if parameter.list {
                return Err(unresolved(
                    at,
                    format!("parameter {name} is a list, not one value"),
                ));
            }
            reads.push(name.to_owned());
            return match &parameter.value {
                Some(value) => Ok(Some(value.clone())),
                None => Err(TemplateError::Parameter {
                    name: name.to_owned(),
                    problem: format!("has no Default: give it with --param {name}=VALUE"),
                }),
            };
        }
        let problem = if name.starts_with("AWS::") {
            format!("{name} depends on the account and region deployed to")
        } else if self.resources.contains_key(name) {
            format!("!Ref {name} is a name AWS gives the resource once it is created")
        } else {
            format!("{name} is neither a parameter nor a resource of the template")
        };
        Err(unresolved(at, problem))
    }

    /// `value` with any `Fn::If` around it decided; `None` for `AWS::NoValue`.
    fn decide(
        &self,
        value: &'t Value,
        at: &str,
        reads: &mut Vec<String>,
    ) -> Result<Option<&'t Value>, TemplateError> {
        let mut value = value;
        loop {
            match intrinsic(value) {
                Some((function, argument)) if function == "Fn::If" => {
                    value = self.choose(argument, at, reads)?;
                }
                Some((function, argument))
                    if function == "Ref" && argument.as_str() == Some("AWS::NoValue") =>
                {
                    return Ok(None);
                }
                _ => return Ok(Some(value)),
            }
        }
    }

    /// The branch an `Fn::If` with `argument` takes.
    fn choose(
        &self,
        argument: &'t Value,
        at: &str,
        reads: &mut Vec<String>,
    ) -> Result<&'t Value, TemplateError> {
        let Value::Sequence(items) = argument else {
            return Err(unresolved(at, "!If takes [condition, then, else]"));
        };
        let [condition, then, otherwise] = items.as_slice() else {
            return Err(unresolved(at, "!If takes [condition, then, else]"));
        };
        let condition = condition
            .as_str()
            .ok_or_else(|| unresolved(at, "!If names its condition with a string"))?;
        Ok(if self.condition(condition, reads, 0)? {
            then
        } else {
            otherwise
        })
    }

    /// Whether the template's condition `name` holds.
    fn condition(
        &self,
        name: &str,
        reads: &mut Vec<String>,
        depth: usize,
    ) -> Result<bool, TemplateError> {
        let at = format!("Conditions.{name}");
        if depth > MAX_CONDITION_DEPTH {
            return Err(unresolved(at, "conditions name each other in a loop"));
        }
        let expression = match &self.conditions[name] {
            Value::Null => return Err(unresolved(at, "no such condition")),
            expression => expression,
        };
        self.truth(expression, &at, reads, depth + 1)
    }

    /// Whether the condition `expression` holds.
    fn truth(
        &self,
        expression: &'t Value,
        at: &str,
        reads: &mut Vec<String>,
        depth: usize,
    ) -> Result<bool, TemplateError> {
        let not_a_condition = || {
            unresolved(
                at,
                format!(
                    "expected !Equals, !Not, !And, !Or or !Condition, found {}",
                    render(expression)
                ),
            )
        };
        let (function, argument) = intrinsic(expression).ok_or_else(not_a_condition)?;
        let items = match argument {
            Value::Sequence(items) => items.as_slice(),
            _ => &[],
        };
        match (function.as_str(), items) {
            ("Condition", _) => {
                let name = argument.as_str().ok_or_else(not_a_condition)?;
                self.condition(name, reads, depth + 1)
            }
            ("Fn::Equals", [left, right]) => {
                Ok(self.scalar(left, at, reads)? == self.scalar(right, at, reads)?)
            }
            ("Fn::Not", [inner]) => Ok(!self.truth(inner, at, reads, depth + 1)?),
            ("Fn::And", items) if !items.is_empty() => {
                for item in items {
                    if !self.truth(item, at, reads, depth + 1)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            ("Fn::Or", items) if !items.is_empty() => {
                for item in items {
                    if self.truth(item, at, reads, depth + 1)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Err(not_a_condition()),
        }
    }

    /// `Fn::FindInMap [map, top-level key, second-level key]`.
    fn find_in_map(
        &self,
        argument: &'t Value,
        at: &str,
        reads: &mut Vec<String>,
    ) -> Result<String, TemplateError> {
        let shape = || {
            unresolved(
                at,
                "!FindInMap takes [map, top-level key, second-level key]",
            )
        };
        let Value::Sequence(items) = argument else {
            return Err(shape());
        };
        let mut keys = Vec::with_capacity(3);
        for item in items {
            keys.push(self.scalar(item, at, reads)?.ok_or_else(shape)?);
        }
        let [map, top, second] = keys.as_slice() else {
            return Err(shape());
        };
        let entry = |node: &'t Value, key: &str| match node {
            Value::Mapping(entries) => entries
                .iter()
                .find(|(name, _)| literal(name).as_deref() == Some(key))
                .map(|(_, value)| value),
            _ => None,
        };
        let value = entry(self.mappings, map)
            .and_then(|map| entry(map, top))
            .and_then(|top| entry(top, second))
            .ok_or_else(|| {
                unresolved(
                    at,
                    format!("Mappings.{map} has no {top}.{second}: CloudFormation would refuse the deploy"),
                )
            })?;
        literal(value).ok_or_else(|| {
            unresolved(
                at,
                format!("Mappings.{map}.{top}.{second} is not one value"),
            )
        })
    }

    /// `Fn::Sub`, with `${Parameter}` and its own variables; `${!Literal}` stays `${Literal}`.
    fn substitute(
        &self,
        argument: &'t Value,
        at: &str,
        reads: &mut Vec<String>,
    ) -> Result<String, TemplateError> {
        let (text, variables) = match argument {
            Value::String(text) => (text.as_str(), None),
            Value::Sequence(items) => match items.as_slice() {
                [Value::String(text), Value::Mapping(variables)] => {
                    (text.as_str(), Some(variables))
                }
                _ => {
                    return Err(unresolved(
                        at,
                        "!Sub takes a string, or [string, variables]",
                    ));
                }
            },
            _ => {
                return Err(unresolved(
                    at,
                    "!Sub takes a string, or [string, variables]",
                ));
            }
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| unresolved(at, "!Sub has a ${ without its }"))?;
            let name = &after[..end];
            let value = if let Some(kept) = name.strip_prefix('!') {
                Some(format!("${{{kept}}}"))
            } else if let Some(value) = variables.and_then(|variables| variables.get(name)) {
                self.scalar(value, at, reads)?
            } else if name.contains('.') {
                return Err(unresolved(
                    at,
                    format!("${{{name}}} is an attribute AWS gives a resource once it is created"),
                ));
            } else {
                self.reference(name, at, reads)?
            };
            let value = value.ok_or_else(|| {
                unresolved(
                    at,
                    format!("${{{name}}} is AWS::NoValue, which !Sub cannot take"),
                )
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `path` under `node` (which is at `at`), deciding each `Fn::If` on the way: the expression
    /// there and where it is; `None` when a step is left out.
    fn find(
        &self,
        node: &'t Value,
        at: &str,
        path: &[&str],
        reads: &mut Vec<String>,
    ) -> Result<Option<(&'t Value, String)>, TemplateError> {
        let mut node = node;
        let mut at = at.to_owned();
        for key in path {
            match self.decide(node, &at, reads)? {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Mapping(map)) => match map.get(*key) {
                    Some(child) => node = child,
                    None => return Ok(None),
                },
                Some(other) => {
                    return Err(unresolved(
                        at,
                        format!("expected a map, found {}", render(other)),
                    ));
                }
            }
            at = format!("{at}.{key}");
        }
        Ok(Some((node, at)))
    }

    /// The value of the expression found at `at`, with its provenance; `None` for `AWS::NoValue`.
    fn evaluate(
        &self,
        expression: &'t Value,
        at: String,
        mut reads: Vec<String>,
    ) -> Result<Option<Setting>, TemplateError> {
        let Some(text) = self.scalar(expression, &at, &mut reads)? else {
            return Ok(None);
        };
        let mut source = format!("{at} = {}", render(expression));
        let mut seen: Vec<&str> = Vec::new();
        for name in &reads {
            if seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            if let Some(parameter) = self.parameters.get(name) {
                let origin = match parameter.origin {
                    Origin::Default => "by default",
                    Origin::Given => "from --param",
                };
                let value = parameter.value.as_deref().unwrap_or_default();
                let _ = write!(source, "; {name} = {value} {origin}");
            }
        }
        Ok(Some(Setting { text, at, source }))
    }

    /// The value at `path` under `node` (at `at`); `None` when left out.
    fn setting(
        &self,
        node: &'t Value,
        at: &str,
        path: &[&str],
    ) -> Result<Option<Setting>, TemplateError> {
        let mut reads = Vec::new();
        match self.find(node, at, path, &mut reads)? {
            Some((expression, at)) => self.evaluate(expression, at, reads),
            None => Ok(None),
        }
    }

    /// The number at `path` under `node` (at `at`); `None` when left out.
    fn number(
        &self,
        node: &'t Value,
        at: &str,
        path: &[&str],
    ) -> Result<Option<Setting>, TemplateError> {
        let setting = self.setting(node, at, path)?;
        if let Some(setting) = &setting {
            setting.number()?;
        }
        Ok(setting)
    }

    /// `field` from the number at `path` under `node` (at `at`), or AWS's `default` (its value,
    /// and whose default it is) when the template leaves it out.
    fn number_or(
        &self,
        field: &'static str,
        node: &'t Value,
        at: &str,
        path: &[&str],
        (value, whose): (f64, &str),
    ) -> Result<Taken, TemplateError> {
        match self.number(node, at, path)? {
            Some(setting) => setting.taken(field),
            None => Ok(Taken {
                field,
                value,
                source: format!("{at} sets no {}: {whose}", path.join(".")),
            }),
        }
    }

    /// A function's property at `path` under its `Properties`, or under SAM's `Globals.Function`
    /// when a SAM function leaves it out; `None` when neither sets it.
    fn function_setting(
        &self,
        function: Resource<'t>,
        path: &[&str],
    ) -> Result<Option<Setting>, TemplateError> {
        let mut reads = Vec::new();
        let at = format!("{}.Properties", function.id);
        let mut found = self.find(&function.body["Properties"], &at, path, &mut reads)?;
        if found.is_none() && function.kind == SERVERLESS_FUNCTION {
            found = self.find(
                &self.globals["Function"],
                "Globals.Function",
                path,
                &mut reads,
            )?;
        }
        match found {
            Some((expression, at)) => self.evaluate(expression, at, reads),
            None => Ok(None),
        }
    }

    /// `function`'s settings as it reads them at cold start from the variables the template
    /// gives it, of which `names` are read here (the others keep the function's defaults).
    fn settings(
        &self,
        function: Resource<'t>,
        names: &[&'static str],
    ) -> Result<(Settings, Variables<'t>), TemplateError> {
        let mut given = BTreeMap::new();
        for &name in names {
            given.insert(
                name,
                self.function_setting(function, &["Environment", "Variables", name])?,
            );
        }
        let settings = Settings::from_lookup(|name| {
            given
                .get(name)
                .and_then(Option::as_ref)
                .map(|setting: &Setting| setting.text.clone())
        })
        .map_err(|error| {
            unresolved(
                format!("{}.Properties.Environment.Variables", function.id),
                format!("{error}: the function would refuse to start"),
            )
        })?;
        Ok((settings, Variables { function, given }))
    }

    /// The consumer's one SQS event source.
    fn event_source(&self, consumer: Resource<'t>) -> Result<EventSource<'t>, TemplateError> {
        let mut found = Vec::new();
        if let Value::Mapping(events) = &consumer.body["Properties"]["Events"] {
            for (name, event) in events {
                if event["Type"].as_str() != Some("SQS") {
                    continue;
                }
                let name = literal(name).unwrap_or_default();
                let at = format!("{}.Properties.Events.{name}.Properties", consumer.id);
                found.push(EventSource {
                    queue_at: format!("{at}.Queue"),
                    at,
                    properties: &event["Properties"],
                    queue: &event["Properties"]["Queue"],
                });
            }
        }
        let mappings = self.resources_of(&[EVENT_SOURCE_MAPPING], |_, body| {
            named_resource(&body["Properties"]["FunctionName"]) == Some(consumer.id)
        })?;
        for mapping in mappings {
            let properties = &mapping.body["Properties"];
            let source = &properties["EventSourceArn"];
            let reads_a_queue = match get_att(source) {
                Some((id, _)) => self.resource(id, QUEUE)?.is_some(),
                None => false,
            };
            if reads_a_queue {
                let at = format!("{}.Properties", mapping.id);
                found.push(EventSource {
                    queue_at: format!("{at}.EventSourceArn"),
                    at,
                    properties,
                    queue: source,
                });
            }
        }
        if found.len() > 1 {
            let places: Vec<&str> = found.iter().map(|source| source.at.as_str()).collect();
            return Err(unresolved(
                consumer.id,
                format!(
                    "{} SQS event sources ({}): the simulator models one work queue",
                    found.len(),
                    places.join(", ")
                ),
            ));
        }
        found.pop().ok_or_else(|| {
            unresolved(
                consumer.id,
                "no SQS event source (an SQS event, or an AWS::Lambda::EventSourceMapping naming it)",
            )
        })
    }

    /// The queue `source` reads: a queue of this template, named by `!GetAtt QUEUE.Arn`.
    fn queue(&self, source: &EventSource<'t>) -> Result<Resource<'t>, TemplateError> {
        let not_ours = || {
            unresolved(
                &source.queue_at,
                format!(
                    "{} is not the Arn of an AWS::SQS::Queue this template creates: the simulator reads the queue's attributes from the template",
                    render(source.queue)
                ),
            )
        };
        match get_att(source.queue) {
            Some((id, "Arn")) => self.resource(id, QUEUE)?.ok_or_else(not_ours),
            _ => Err(not_ours()),
        }
    }

    /// `function`'s HTTP API route `method path`.
    fn route(
        &self,
        function: Resource<'t>,
        method: &str,
        path: &str,
    ) -> Result<Route<'t>, TemplateError> {
        let at = format!("{}.Properties.Events", function.id);
        if let Value::Mapping(events) = &function.body["Properties"]["Events"] {
            for (name, event) in events {
                let properties = &event["Properties"];
                let serves = properties["Path"].as_str() == Some(path)
                    && properties["Method"]
                        .as_str()
                        .is_some_and(|m| m.eq_ignore_ascii_case(method));
                if !serves {
                    continue;
                }
                let at = format!("{at}.{}", literal(name).unwrap_or_default());
                let kind = event["Type"].as_str().unwrap_or_default();
                if kind != "HttpApi" {
                    return Err(unresolved(
                        at,
                        format!(
                            "a {kind} event: the simulator reads the throttles of HTTP APIs (HttpApi events)"
                        ),
                    ));
                }
                let api = match &properties["ApiId"] {
                    Value::Null => None,
                    api_id => {
                        let api = named_resource(api_id)
                            .map(|id| self.resource(id, HTTP_API))
                            .transpose()?
                            .flatten()
                            .ok_or_else(|| {
                                unresolved(
                                    format!("{at}.Properties.ApiId"),
                                    format!(
                                        "{} is not an AWS::Serverless::HttpApi this template creates",
                                        render(api_id)
                                    ),
                                )
                            })?;
                        Some(api)
                    }
                };
                return Ok(Route {
                    key: format!("{} {path}", method.to_uppercase()),
                    api,
                });
            }
        }
        Err(unresolved(
            at,
            format!("no HttpApi event serves {method} {path}"),
        ))
    }

    /// A throttle `setting` (`ThrottlingRateLimit`, `ThrottlingBurstLimit`) of `route`: from
    /// its own `RouteSettings`, else the API's `DefaultRouteSettings`; in each, the API's
    /// own, else SAM's `Globals.HttpApi`. `None` when none sets it.
    fn throttle(&self, route: &Route<'t>, setting: &str) -> Result<Option<Setting>, TemplateError> {
        let own = route
            .api
            .map(|api| (&api.body["Properties"], format!("{}.Properties", api.id)));
        let globals = (&self.globals["HttpApi"], "Globals.HttpApi".to_owned());
        for path in [
            ["RouteSettings", route.key.as_str(), setting].as_slice(),
            ["DefaultRouteSettings", setting].as_slice(),
        ] {
            for (node, at) in own.iter().chain([&globals]) {
                if let Some(found) = self.number(node, at, path)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
