//! The job kinds Spillway ships: `webhook` (see [`crate::webhook`]), and the demonstration kinds
//! `echo` and `sleep`.
//!
//! Adding a kind is one [`Processor`](crate::processor::Processor) impl and one `.with(...)` line
//! in [`builtin_with`] (or, in a binary of your own, on the [`Processors`] you give the app).

mod echo;
mod sleep;

pub use echo::Echo;
pub use sleep::Sleep;

use crate::processor::Processors;
use crate::webhook::{self, Webhook, WebhookSettings};

/// The processors that ship with Spillway, the `webhook` one on default settings and without a
/// signing secret.
pub fn builtin() -> Processors {
    builtin_with(Webhook::new(WebhookSettings::default(), None))
}

/// The processors that ship with Spillway, with this `webhook` processor.
pub fn builtin_with(webhook: Webhook) -> Processors {
    Processors::new()
        .with("echo", Echo)
        .with("sleep", Sleep)
        .with(webhook::KIND, webhook)
}

/// The processors a deployed stack runs: `webhook`, and the demonstration kinds `echo` and `sleep`
/// only when `demo_kinds` is on (`SPILLWAY_DEMO_KINDS`).
pub fn deployed(webhook: Webhook, demo_kinds: bool) -> Processors {
    if demo_kinds {
        builtin_with(webhook)
    } else {
        Processors::new().with(webhook::KIND, webhook)
    }
}
