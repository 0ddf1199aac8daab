//! The healing pipeline: from a dead-lettered job to a verified fix in a reviewer's inbox.
//!
//! Triage parses the job's last stack trace; memory records the failure and may hold a
//! verified fix for its group; the model is asked for a fix otherwise; the edits are applied
//! in a throw-away workspace and the same handler re-runs the same payload in the sandbox. A
//! fix is called verified only when that re-run succeeds. Every round is stored, and one
//! e-mail goes out per outcome.
//!
//! Healing runs as a job on [`smartworker_core::HEAL_QUEUE`] through [`HealHandler`], so
//! repairs survive restarts and are limited by that queue's concurrency.

mod email;
mod embed;
mod healer;
mod prompt;
mod protect;

pub use embed::RemoteEmbedder;
pub use healer::{
    HealError, HealEvent, HealHandler, HealReport, HealSettings, Healer, HealerParts,
};
pub use prompt::root_cause;
