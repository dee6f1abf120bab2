//! What every command that opens a pipeline shares, below the language server and the
//! executor: the project's settings (`difflow.toml`, with its `[slurm]` table) and the
//! [`Session`] (graph, keys and cache of a checked pipeline).

mod session;
pub mod settings;
pub mod slurm;
pub mod trust;

pub use session::Session;
