//! Warden's policy: facts about a session and a statement go in, a decision and the rule that
//! made it come out.
//!
//! This crate does no I/O. The proxy builds a [`SessionIdentity`] when a client logs in and an
//! analysis (from `warden-analysis`) for each statement, and asks a [`StatementPolicy`] what to
//! do. The proxy carries the decision out — forwards, refuses with a database-native error, or
//! forwards rewritten SQL — and records it in the audit trail. Later issues add the policy file
//! (identities, data sets, encryption, masking and firewall rules); the seam they plug into is
//! [`StatementPolicy`].

#![forbid(unsafe_code)]

mod decision;
mod identity;

pub use decision::{Decision, Passthrough, Refusal, Rewrite, StatementPolicy};
pub use identity::SessionIdentity;
