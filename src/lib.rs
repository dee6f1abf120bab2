//! difflow: a declarative pipeline language for diffusion-model experiments.
//!
//! This crate is the part that never loads libtorch: the front end (`syntax`, `lang`,
//! `schema`, `diagnostics`), the stage graph, the cache and the orchestrator that runs
//! stages in `difflow-worker` processes (the `engine/` crate), plus the float64
//! diffusion tables that `difflow show` prints.

pub mod cache;
pub mod diagnostics;
pub mod doc;
pub mod exec;
pub mod failure;
pub mod fetch;
pub mod fmt;
pub mod graph;
pub mod lang;
pub mod lsp;
pub mod project;
pub mod remote;
pub mod report;
pub mod syntax;

// Shared with the engine through `difflow-core`; re-exported so paths read the same.
pub use difflow_core::{diffusion, job, schema};
pub use failure::Failure;
