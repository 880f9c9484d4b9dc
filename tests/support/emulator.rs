//! The Lambda binaries under cargo-lambda's runtime emulator (`cargo lambda watch`), invoked the
//! way the documentation shows (`cargo lambda invoke`), on the resources of one [`Stack`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::Stack;

/// The emulator compiles a function on its first invoke (`cargo run`), and other tests may hold
/// cargo's build lock meanwhile: a cold build of the AWS crates takes minutes on two cores.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `cargo lambda watch` may take to listen: it runs `cargo metadata` first, on a
/// machine that may be busy building.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long it may take to stop its function instances (and any `cargo run` still compiling)
/// before it is killed outright.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

static INVOCATIONS: AtomicU32 = AtomicU32::new(0);

/// A running `cargo lambda watch`, stopped when dropped — also when the test panics.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// Why an invocation failed: the function returned an error (or never answered), as
/// `cargo lambda invoke` reported it.
#[derive(Debug)]
pub struct InvokeError {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Emulator {
    /// Starts the emulator on a free loopback port with the functions configured for `stack`.
    /// The functions inherit this process's environment (`AWS_ENDPOINT_URL`, region,
    /// credentials, `CARGO_TARGET_DIR` so that the test build is reused).
    pub async fn start(stack: &Stack) -> Self {
        Self::start_with(stack, &[]).await
    }

    /// [`Emulator::start`], with more variables for the functions (`AWS_LAMBDA_LOG_FORMAT`, say).
    pub async fn start_with(stack: &Stack, extra: &[(&str, &str)]) -> Self {
        let max_attempts = stack.max_receive_count.to_string();
        let env_vars: Vec<String> = [
            ("SPILLWAY_TABLE", stack.table.as_str()),
            ("SPILLWAY_QUEUE_URL", stack.queue_url.as_str()),
            ("SPILLWAY_MAX_ATTEMPTS", max_attempts.as_str()),
            ("SPILLWAY_DEMO_KINDS", "true"),
        ]
        .iter()
        .chain(extra)
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut emulator = Self::spawn(&env_vars);
            match emulator.wait_until_listening().await {
                Ok(()) => return emulator,
                // Another process may take the port before the emulator binds it.
                Err(_) if attempt < 3 => {}
                Err(status) => panic!(
                    "`cargo lambda watch` exited ({status}); the tests need cargo-lambda on PATH: \
                     run them with `scripts/test`, which installs it\n{}",
                    emulator.log_tail()
                ),
            }
        }
    }

    fn spawn(env_vars: &[String]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("spillway-lambda-{port}.log"));
        let out = File::create(&log).expect("create the emulator's log");
        let err = out.try_clone().unwrap();
        let mut command = Command::new(cargo());
        command
            .current_dir(workspace_root())
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            // A test run must not rebuild and restart the functions when a file changes, nor
            // rewrite Cargo.lock (its `cargo run` takes the options of `cargo build`).
            .args(["--ignore-changes", "--locked"]);
        for env_var in env_vars {
            command.args(["--env-var", env_var]);
        }
        let child = command
            .env("AWS_ENDPOINT_URL", crate::endpoint())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // The last resort; `Drop` first asks it to stop its children.
            .kill_on_drop(true)
            .spawn()
            .expect("start `cargo lambda watch`");
        Self { child, port, log }
    }

    /// Invokes `function` with `event` through `cargo lambda invoke` and parses what it printed.
    pub async fn invoke(&self, function: &str, event: &Value) -> Result<Value, InvokeError> {
        let n = INVOCATIONS.fetch_add(1, Ordering::Relaxed);
        let data_file =
            std::env::temp_dir().join(format!("spillway-lambda-{}-{n}.json", self.port));
        std::fs::write(&data_file, event.to_string()).unwrap();
        let invoke = Command::new(cargo())
            .current_dir(workspace_root())
            .args(["lambda", "invoke", function, "--color", "never"])
            // `-A` is both `--invoke-address` and `--data-ascii` in cargo-lambda 1.9: spell it out.
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &self.port.to_string()])
            .arg("--data-file")
            .arg(&data_file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(INVOKE_TIMEOUT, invoke).await;
        std::fs::remove_file(&data_file).ok();
        let output = output
            .unwrap_or_else(|_| {
                panic!(
                    "`{function}` did not answer in {INVOKE_TIMEOUT:?}\n{}",
                    self.log_tail()
                )
            })
            .expect("run `cargo lambda invoke`");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            return Err(InvokeError {
                status: output.status,
                stdout,
                stderr,
            });
        }
        Ok(serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!(
                "`{function}` answered something that is not JSON ({error}): {stdout}\n{}",
                self.log_tail()
            )
        }))
    }

    /// Like [`Self::invoke`], for an invocation that must succeed.
    pub async fn invoke_ok(&self, function: &str, event: &Value) -> Value {
        match self.invoke(function, event).await {
            Ok(output) => output,
            Err(error) => panic!(
                "`{function}` failed ({}): {}\n{}",
                error.status,
                error.stderr,
                self.log_tail()
            ),
        }
    }

    /// Everything the emulator and the functions logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of what the emulator and the functions logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(8_000);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        format!("--- end of {} ---\n{}", self.log.display(), &log[start..])
    }

    /// Stops the emulator and what it started.
    fn stop(&mut self) {
        // SIGTERM lets cargo-lambda stop its function instances and any `cargo run` still
        // compiling: they run in process groups of their own, so killing it outright (or its
        // group) would leave them behind.
        let terminated = self.child.id().is_some_and(|pid| {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .is_ok_and(|status| status.success())
        });
        if terminated {
            let asked = Instant::now();
            while asked.elapsed() < STOP_TIMEOUT {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.child.start_kill().ok();
    }

    /// Waits until the emulator serves on its port, or returns how it exited. The port must
    /// also appear in its log: something else may listen there, if only for a moment.
    async fn wait_until_listening(&mut self) -> Result<(), ExitStatus> {
        let started = Instant::now();
        let address = format!("127.0.0.1:{}", self.port);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(status);
            }
            let logged = std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(&address));
            if logged && listening(self.port).await {
                return Ok(());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "`cargo lambda watch` did not listen on {address} in {START_TIMEOUT:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
        // A failing test's message points at the log.
        if std::thread::panicking() {
            eprintln!("cargo lambda watch logged to {}", self.log.display());
        } else {
            std::fs::remove_file(&self.log).ok();
        }
    }
}

/// Whether something listens on `port`. A connect alone does not tell: one to a free port in the
/// ephemeral range can pick that very port as its source and connect to itself.
async fn listening(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .is_ok_and(|stream| stream.local_addr().ok() != stream.peer_addr().ok())
}

/// A loopback port no other emulator of this test run was given: the tests start theirs at the
/// same moment, and the kernel may hand a port it just released out again.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// The cargo that runs the tests, so that the emulator builds with the same toolchain.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn workspace_root() -> &'static Path {
    crate::workspace_root()
}
