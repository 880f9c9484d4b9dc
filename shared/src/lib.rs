//! `spillway-core`: everything Spillway's functions and command-line tool share. The domain and
//! its state machine, the `JobStore` and `JobQueue` ports with their AWS and in-memory adapters,
//! the processors, and the logic of every handler, so each Lambda's `main` only wires them up.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod direct;
pub mod dlq;
pub mod domain;
pub mod error;
pub mod esm;
pub mod kinds;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod processor;
pub mod provision;
pub mod queue;
pub mod sdk;
pub mod store;
pub mod targets;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod webhook;

pub use app::App;
pub use config::{Config, ConfigError, Settings};
pub use webhook::WebhookSettings;
