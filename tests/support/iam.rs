//! IAM policy evaluation for the deployment test: which identity-based statement allows a call
//! (action and resource), as AWS decides it for a role with no boundary, session policy or SCP.
//! moto can enforce IAM itself, but it evaluates DynamoDB requests against `*` (it does not know
//! their table), so a table-scoped statement would never match there; this evaluator knows every
//! call's resource.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

/// One statement of a policy document, as the evaluator understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Where it comes from: the policy's name and the statement's index (or `Sid`).
    pub origin: String,
    /// `Allow` (true) or `Deny` (false).
    pub allow: bool,
    /// Action patterns, `service:Action` with `*` and `?` wildcards, matched without case.
    pub actions: Vec<String>,
    /// Resource ARN patterns, with `*` and `?` wildcards, matched with case.
    pub resources: Vec<String>,
}

/// The statements of one role's policies.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Every statement, in document order.
    pub statements: Vec<Statement>,
}

/// What the evaluator decided about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by these statements (their indexes in [`Policy::statements`]), and denied by none.
    Allowed(Vec<usize>),
    /// No statement allows it.
    ImplicitDeny,
    /// A `Deny` statement matches it.
    ExplicitDeny(usize),
}

impl Policy {
    /// Adds the statements of a policy `document` named `name`.
    ///
    /// # Panics
    /// On an element this evaluator does not model (`Condition`, `NotAction`, `NotResource`,
    /// `Principal`): the test must not pretend to check what it cannot.
    pub fn add_document(&mut self, name: &str, document: &Value) {
        let statements = match &document["Statement"] {
            Value::Array(list) => list.clone(),
            single @ Value::Object(_) => vec![single.clone()],
            other => panic!("policy {name}: Statement is {other}"),
        };
        for (index, statement) in statements.iter().enumerate() {
            for unsupported in ["Condition", "NotAction", "NotResource", "Principal"] {
                assert!(
                    statement.get(unsupported).is_none(),
                    "policy {name}, statement {index}: the deployment test's evaluator does not \
                     model {unsupported}"
                );
            }
            let sid = statement["Sid"].as_str().map(str::to_owned);
            self.statements.push(Statement {
                origin: format!("{name}/{}", sid.unwrap_or_else(|| index.to_string())),
                allow: match statement["Effect"].as_str() {
                    Some("Allow") => true,
                    Some("Deny") => false,
                    other => panic!("policy {name}, statement {index}: Effect {other:?}"),
                },
                actions: strings(&statement["Action"]),
                resources: strings(&statement["Resource"]),
            });
        }
    }

    /// Whether the policy allows `action` on `resource`: an explicit deny wins, then any allow.
    pub fn decide(&self, action: &str, resource: &str) -> Decision {
        let matching = |statement: &Statement| {
            statement.actions.iter().any(|pattern| {
                wildcard(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
            }) && statement
                .resources
                .iter()
                .any(|pattern| wildcard(pattern, resource))
        };
        if let Some(deny) = self.statements.iter().position(|s| !s.allow && matching(s)) {
            return Decision::ExplicitDeny(deny);
        }
        let allowing: Vec<usize> = self
            .statements
            .iter()
            .enumerate()
            .filter(|(_, s)| s.allow && matching(s))
            .map(|(index, _)| index)
            .collect();
        if allowing.is_empty() {
            Decision::ImplicitDeny
        } else {
            Decision::Allowed(allowing)
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

/// IAM's pattern match: `*` is any run of characters, `?` any one character.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    // The classic greedy match with one backtrack point, linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The AWS managed policies SAM attaches to the roles it generates, as AWS publishes them. Any
/// other managed policy fails the test until its document is added here.
pub fn managed_policy(arn: &str) -> Value {
    let name = arn.rsplit('/').next().unwrap_or_default();
    match name {
        "AWSLambdaBasicExecutionRole" => serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*"
            }]
        }),
        "AWSXrayWriteOnlyAccess" => serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries"
                ],
                "Resource": ["*"]
            }]
        }),
        _ => panic!(
            "managed policy {arn}: add its document to tests/support/iam.rs so the deployment \
             test can evaluate it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wildcards_match_as_iam_matches_them() {
        assert!(wildcard("*", ""));
        assert!(wildcard("dynamodb:*", "dynamodb:getitem"));
        assert!(wildcard("dynamodb:get*", "dynamodb:getitem"));
        assert!(!wildcard("dynamodb:get*", "dynamodb:putitem"));
        assert!(wildcard(
            "arn:aws:logs:*:*:log-group:a:*",
            "arn:aws:logs:r:1:log-group:a:log-stream:s"
        ));
        assert!(!wildcard(
            "arn:aws:logs:*:*:log-group:a:*",
            "arn:aws:logs:r:1:log-group:ab"
        ));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard("*x*y", "axxbxy"));
    }

    #[test]
    fn an_allow_needs_both_action_and_resource_and_a_deny_wins() {
        let mut policy = Policy::default();
        policy.add_document(
            "p",
            &json!({"Statement": [
                {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": "arn:aws:dynamodb:us-east-1:1:table/jobs"},
                {"Effect": "Deny", "Action": "dynamodb:PutItem", "Resource": "*"}
            ]}),
        );
        let table = "arn:aws:dynamodb:us-east-1:1:table/jobs";
        assert_eq!(
            policy.decide("dynamodb:GetItem", table),
            Decision::Allowed(vec![0])
        );
        assert_eq!(
            policy.decide(
                "dynamodb:GetItem",
                "arn:aws:dynamodb:us-east-1:1:table/other"
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            policy.decide("dynamodb:UpdateItem", table),
            Decision::ImplicitDeny
        );
        assert_eq!(
            policy.decide("dynamodb:PutItem", table),
            Decision::ExplicitDeny(1)
        );
    }
}
