//! Pure rules that turn ventana's decisions, transitions and alarms into the events it
//! publishes: `delivery_failed` with its reason, detail and suggestion; `auto_reply` and
//! `window_closing` behind their guards (docs/rules.md §1.3); and the one fold ([`fold_event`])
//! that `ventana replay` and the live service share.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod fold;
mod output;
mod render;

pub use fold::{Fold, advance_to, fold_event};
pub use output::{Decided, Output, OutputBody, Source, Suggestion, Trigger};
pub use render::{render, suggestion};
