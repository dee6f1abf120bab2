//! The part of difflow that both sides stand on: the front end (language, graph, cache,
//! command line; never links libtorch) and the engine (the `difflow-worker` on tch).
//!
//! - [`job`]: the protocol between orchestrator and worker (job file in, events out);
//! - [`schema`]: the one table of kinds, variants and keys, with types and defaults;
//! - [`params`]: each kind's variants as typed values, and the facts both sides judge them by;
//! - [`value`]: resolved values, as the checker produces them and stage keys hash them;
//! - [`diffusion`]: the float64 noise-schedule tables;
//! - [`unet`]: the UNet family's levels and the rules they must meet on an image size;
//! - [`net_size`]: a UNet's parameter count and memory before it is built, and the limits;
//! - [`files`]: the one rule for reading a file a user, recipe or cache entry names;
//! - [`diffusers`]: diffusers folders, their configs as difflow's net and schedule, and
//!   which diffusers module each difflow module is.

pub mod diffusers;
pub mod diffusion;
pub mod files;
pub mod job;
pub mod net_size;
pub mod params;
pub mod schema;
pub mod unet;
pub mod value;
