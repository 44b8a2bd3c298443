//! Code mode's engine and sandboxes.
//!
//! A model-written program is JavaScript run by QuickJS ([`engine`]): a fresh runtime per run, held to a time,
//! memory, stack, output and tool-call limit, with no ambient capability — no file, network, timer or module
//! access. Its only way out is `tools.<namespace>.<tool>(args)`, which the engine hands to a [`Host`]; the
//! gateway's host sends each call through the dispatch with the caller's principal, so code reaches exactly
//! what the caller may reach directly.

pub mod describe;
pub mod engine;
pub mod local;
pub mod names;
pub mod search;

pub use engine::{Binding, Completion, Failure, Host, Limits, LogLine, Program, Run, Stopped};
pub use local::{Quickjs, ToolCaller};

#[cfg(test)]
mod tests;
