//! The job kinds Spillway ships: `webhook` (see [`crate::webhook`]), and the demonstration kinds
//! `echo` and `sleep`.
//!
//! Adding a kind is one [`Processor`](crate::processor::Processor) impl and one `.with(...)` line
//! in [`builtin_with`], or, in a crate of your own, on the [`Processors`] your function's `main`
//! hands [`crate::lambda::run`] (see [`deployed_with`]). A processor that runs long may report
//! how far it has come with [`Work::progress`](crate::processor::Work::progress), as `sleep`
//! does.

mod echo;
mod sleep;

pub use echo::Echo;
pub use sleep::Sleep;

use crate::domain::Kind;
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

/// The processors a deployed stack runs ([`deployed`]) and `custom`, the kinds of a crate of its
/// own. A custom kind may not take the name of a kind Spillway ships (`webhook`, `echo` or
/// `sleep`), whether or not `demo_kinds` turns the demonstration ones on: the same binary then
/// runs the same kinds on every stack, and a kind never changes meaning with a setting.
pub fn deployed_with(
    webhook: Webhook,
    demo_kinds: bool,
    custom: Processors,
) -> Result<Processors, TakenKind> {
    refuse_builtin_names(&custom)?;
    Ok(deployed(webhook, demo_kinds).and(custom))
}

/// `Err` naming the first of `custom`'s kinds that Spillway ships too.
pub fn refuse_builtin_names(custom: &Processors) -> Result<(), TakenKind> {
    let shipped = builtin();
    match custom
        .kinds()
        .into_iter()
        .find(|kind| shipped.knows(kind.as_str()))
    {
        Some(kind) => Err(TakenKind(kind.clone())),
        None => Ok(()),
    }
}

/// A custom kind named like one Spillway ships, refused when a function starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the custom kind `{0}` has the name of a kind Spillway ships (webhook, echo, sleep): register \
     it under another name"
)]
pub struct TakenKind(pub Kind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_kinds_join_the_deployed_ones() {
        let custom = Processors::new().with("shout", Echo);
        let webhook = Webhook::new(WebhookSettings::default(), None);
        let processors = deployed_with(webhook, false, custom).unwrap();
        let kinds: Vec<&str> = processors.kinds().iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, ["shout", "webhook"]);
    }

    #[test]
    fn a_custom_kind_may_not_take_a_shipped_name_even_with_the_demo_kinds_off() {
        for (name, demo_kinds) in [("webhook", true), ("echo", false), ("sleep", false)] {
            let custom = Processors::new().with("mine", Echo).with(name, Echo);
            let webhook = Webhook::new(WebhookSettings::default(), None);
            let error = deployed_with(webhook, demo_kinds, custom).unwrap_err();
            assert_eq!(error.0.as_str(), name);
            assert!(error.to_string().contains(&format!("`{name}`")), "{error}");
        }
    }
}
