//! A stack deployed from `infra/template.yaml` onto the AWS emulator by `tests/deploy/stack.py`
//! (the SAM transform, every intrinsic resolved, the resources moto emulates created), and the
//! manifest it prints: what each function is given, what it may call, how it is invoked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

/// What `tests/deploy/stack.py deploy` printed.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
    /// Every template parameter with its value (default or override): a string, or a list of
    /// strings for a `CommaDelimitedList`.
    pub parameters: BTreeMap<String, Value>,
    /// Every resource by logical id.
    pub resources: BTreeMap<String, Resource>,
    /// The Lambda functions by logical id.
    pub functions: BTreeMap<String, Function>,
    /// The IAM roles by logical id.
    pub roles: BTreeMap<String, Role>,
    pub event_source_mappings: Vec<EventSourceMapping>,
    pub http_apis: Vec<HttpApi>,
    /// The stack's outputs.
    pub outputs: BTreeMap<String, String>,
}

/// One resource of the stack.
#[derive(Debug, Clone, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    /// What `Ref` gives.
    pub r#ref: Option<String>,
    /// What `Fn::GetAtt` gives.
    pub attributes: BTreeMap<String, Value>,
    /// `created` on the emulator, `recorded` (emulated by the tests), or `not_emulated`.
    pub emulated: String,
}

/// A Lambda function as the template declares it, every value resolved.
#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    /// The binary `BuildProperties` names.
    pub binary: Option<String>,
    /// Where its code is, when the template (as `sam build` left it) points at a directory.
    pub code_dir: Option<PathBuf>,
    pub name: String,
    pub arn: String,
    pub handler: String,
    pub runtime: String,
    pub architectures: Vec<String>,
    pub timeout: u64,
    pub memory_size: u64,
    pub reserved_concurrency: Option<u64>,
    /// Its environment variables, exactly.
    pub environment: BTreeMap<String, String>,
    pub logging: Logging,
    pub tracing: Option<String>,
    pub role_arn: String,
    pub role_logical_id: String,
    /// The role's inline policies.
    pub policies: Vec<NamedPolicy>,
    pub managed_policy_arns: Vec<String>,
}

/// A function's `LoggingConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct Logging {
    pub log_format: Option<String>,
    pub application_log_level: Option<String>,
    pub system_log_level: Option<String>,
    pub log_group: Option<String>,
}

/// An inline policy of a role.
#[derive(Debug, Clone, Deserialize)]
pub struct NamedPolicy {
    pub name: String,
    pub document: Value,
}

/// An IAM role of the stack.
#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    pub name: String,
    pub arn: String,
    pub metadata: Value,
}

/// An SQS event source mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct EventSourceMapping {
    pub logical_id: String,
    /// The function's logical id.
    pub function: String,
    pub event_source_arn: String,
    pub batch_size: u32,
    pub maximum_batching_window_seconds: u64,
    pub function_response_types: Vec<String>,
    pub maximum_concurrency: Option<u64>,
    pub enabled: bool,
}

/// An HTTP API and its routes.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpApi {
    pub logical_id: String,
    pub id: String,
    pub routes: Vec<Route>,
    pub default_route_settings: Value,
    pub route_settings: Value,
}

/// One route: `METHOD path` to a function.
#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub method: String,
    pub path: String,
    /// The function's logical id.
    pub function: String,
    /// `AWS_IAM`, `JWT`, `CUSTOM` or `NONE`.
    pub authorization: String,
    pub payload_format_version: String,
}

impl Manifest {
    /// The one function whose binary is `binary` (the consumer's are several: one per lane).
    pub fn function_by_binary(&self, binary: &str) -> (&str, &Function) {
        match self.functions_by_binary(binary).as_slice() {
            [one] => *one,
            [] => panic!("no function of the template builds the binary `{binary}`"),
            several => panic!(
                "{} functions build the binary `{binary}`: {:?}",
                several.len(),
                several.iter().map(|(id, _)| id).collect::<Vec<_>>()
            ),
        }
    }

    /// Every function whose binary is `binary`, by logical id.
    pub fn functions_by_binary(&self, binary: &str) -> Vec<(&str, &Function)> {
        self.functions
            .iter()
            .filter(|(_, f)| f.binary.as_deref() == Some(binary))
            .map(|(id, f)| (id.as_str(), f))
            .collect()
    }

    /// The resource `logical_id`.
    pub fn resource(&self, logical_id: &str) -> &Resource {
        self.resources
            .get(logical_id)
            .unwrap_or_else(|| panic!("the stack has no resource {logical_id}"))
    }

    /// The output `key`.
    pub fn output(&self, key: &str) -> &str {
        self.outputs
            .get(key)
            .unwrap_or_else(|| panic!("the stack has no output {key}"))
    }
}

/// A stack on the emulator, deleted when dropped.
#[derive(Debug)]
pub struct Deployment {
    pub manifest: Manifest,
    raw: String,
    endpoint: String,
}

impl Deployment {
    /// Deploys `template` with the parameter `overrides` onto the emulator at `endpoint`.
    pub fn create(template: &Path, endpoint: &str, overrides: &[(&str, &str)]) -> Self {
        let stack_name = crate::unique_name("spillway-deploy");
        let mut command = python();
        command
            .arg(script())
            .args([
                "deploy",
                "--stack-name",
                &stack_name,
                "--endpoint",
                endpoint,
            ])
            .arg("--template")
            .arg(template);
        for (key, value) in overrides {
            command.args(["--param", &format!("{key}={value}")]);
        }
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/deploy/stack.py (the test command installs its Python tools)");
        assert!(
            output.status.success(),
            "tests/deploy/stack.py deploy failed ({})",
            output.status
        );
        let raw = String::from_utf8(output.stdout).unwrap();
        match serde_json::from_str(&raw) {
            Ok(manifest) => Self {
                manifest,
                raw,
                endpoint: endpoint.to_owned(),
            },
            Err(error) => {
                delete(endpoint, &raw);
                panic!("the deployer printed no manifest ({error}): {raw}");
            }
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        delete(&self.endpoint, &self.raw);
    }
}

/// Deletes what the manifest `raw` says was created.
fn delete(endpoint: &str, raw: &str) {
    let child = python()
        .arg(script())
        .args(["delete", "--endpoint", endpoint])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("could not run tests/deploy/stack.py delete");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(raw.as_bytes());
    }
    let _ = child.wait();
}

/// The Python with the test tools: the test command puts its virtualenv first on `PATH`.
fn python() -> Command {
    let mut command = Command::new("python3");
    command.env("AWS_DEFAULT_REGION", "us-east-1");
    command
}

fn script() -> PathBuf {
    crate::workspace_root().join("tests/deploy/stack.py")
}
