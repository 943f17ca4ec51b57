//! Transparent column encryption (ENC-1 to ENC-8): everything about it that needs no I/O.
//!
//! The proxy loads an [`EncryptionPolicy`] (which columns are protected, with which key, mode,
//! logical type and storage form), reads the live [`Catalog`] from the database, and for every
//! SQL text asks the [`Planner`] for a [`Plan`]: which literals and parameters must be encrypted
//! for which column, which result columns must be decrypted, or why the statement cannot run on
//! ciphertext. It then carries the plan out on the wire: [`rewrite`] splices encrypted literals
//! into the text, [`ColumnCrypto`] seals parameters and opens result values, and [`logical`]
//! converts between the application's values (text and binary wire formats) and the plaintext
//! bytes that are sealed.
//!
//! Plans depend on a statement's template (its text with literals replaced), never on a
//! literal's value, so they are cached like analyses.

#![forbid(unsafe_code)]

pub mod catalog;
pub mod cipher;
pub mod error;
pub mod load_data;
pub mod logical;
pub mod mysql;
pub mod plan;
mod planner;
pub mod policy;
pub mod rewrite;
mod tokens;

pub use catalog::{Catalog, CatalogColumn, CatalogTable, ColumnState};
pub use cipher::ColumnCrypto;
pub use error::EncryptionError;
pub use logical::{LogicalType, ValueError};
pub use plan::{CopyFormat, CopyPlan, LiteralSlot, Plan, PlanRefusal};
pub use planner::Planner;
pub use policy::{ColumnPolicy, EncryptionPolicy, PolicyError, Storage};
