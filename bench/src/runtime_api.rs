//! A Lambda Runtime API emulator on loopback: the four endpoints a custom runtime calls
//! (`invocation/next`, `invocation/{id}/response`, `invocation/{id}/error`, `init/error`), so a
//! function's release binary runs exactly as it would in a Lambda sandbox, one invocation at a
//! time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const RESPONSE: &str = "/2018-06-01/runtime/invocation/{id}/response";
const ERROR: &str = "/2018-06-01/runtime/invocation/{id}/error";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

/// How long an invocation may run unless told otherwise; the deadline the runtime is told.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The emulator. Start it, point a function at [`RuntimeApi::address`] through
/// `AWS_LAMBDA_RUNTIME_API`, then [`RuntimeApi::invoke`].
#[derive(Debug)]
pub struct RuntimeApi {
    address: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Invocation {
    id: String,
    event: Bytes,
    answer: oneshot::Sender<Result<Bytes, String>>,
}

#[derive(Debug)]
struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<Bytes, String>>>>,
    init_error: Mutex<Option<String>>,
    timeout: Duration,
    /// How many `invocation/next` requests the function has made.
    nexts: tokio::sync::watch::Sender<u64>,
}

/// An invocation that did not answer with a response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function reported an error for this invocation (or at init).
    #[error("the function reported an error: {0}")]
    Function(String),
    /// The function went away without answering.
    #[error("the function did not answer (it exited or was stopped)")]
    NoAnswer,
}

impl RuntimeApi {
    /// Starts the emulator on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_timeout(TIMEOUT).await
    }

    /// Starts the emulator for a function whose invocations may run `timeout` (the deadline
    /// each invocation is given).
    pub async fn start_with_timeout(timeout: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            timeout,
            nexts: tokio::sync::watch::Sender::new(0),
        });
        let app = Router::new()
            .route(NEXT, get(next))
            .route(RESPONSE, post(response))
            .route(ERROR, post(error))
            .route(INIT_ERROR, post(init_error))
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            address,
            queue,
            shared,
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Hands `event` to the function at its next `invocation/next`, and waits for its answer.
    pub async fn invoke(&self, event: impl Into<Bytes>) -> Result<Bytes, InvokeError> {
        let (answer, answered) = oneshot::channel();
        let invocation = Invocation {
            id: uuid::Uuid::now_v7().to_string(),
            event: event.into(),
            answer,
        };
        self.queue
            .send(invocation)
            .map_err(|_| InvokeError::NoAnswer)?;
        match answered.await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(error)) => Err(InvokeError::Function(error)),
            Err(_) => Err(InvokeError::NoAnswer),
        }
    }

    /// Waits until the function has asked for its `count`th event (`invocation/next`), the
    /// point at which it has finished everything before it: a CPU reading taken then holds
    /// whole invocation cycles.
    pub async fn parked(&self, count: u64) {
        let mut nexts = self.shared.nexts.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = nexts.wait_for(|&n| n >= count).await;
    }

    /// What the function reported at `init/error`, if it did.
    pub fn init_error(&self) -> Option<String> {
        self.shared
            .init_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    shared.nexts.send_modify(|n| *n += 1);
    let invocation = shared.queue.lock().await.recv().await;
    let Some(invocation) = invocation else {
        return http::StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now()
        .checked_add(shared.timeout)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    shared
        .waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(invocation.id.clone(), invocation.answer);
    let headers = [
        ("lambda-runtime-aws-request-id", invocation.id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:000000000000:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".to_owned(),
        ),
    ];
    (headers, invocation.event).into_response()
}

fn settle(shared: &Shared, id: &str, outcome: Result<Bytes, String>) -> http::StatusCode {
    let waiting = shared
        .waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(id);
    match waiting {
        Some(answer) => {
            let _ = answer.send(outcome);
            http::StatusCode::ACCEPTED
        }
        None => http::StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> http::StatusCode {
    settle(&shared, &id, Ok(body))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> http::StatusCode {
    settle(
        &shared,
        &id,
        Err(String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> http::StatusCode {
    *shared
        .init_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner) =
        Some(String::from_utf8_lossy(&body).into_owned());
    http::StatusCode::ACCEPTED
}
