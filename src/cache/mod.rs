//! The content-addressed stage cache: keys, entries with manifests, per-entry locks, the
//! digest memo and `difflow.lock`.

pub mod continuation;
pub mod digest;
pub mod key;
pub mod lockfile;
pub mod readers;
pub mod store;

pub use digest::Digests;
pub use key::{compute_keys, stage_keys, KeyError, StageKeys};
pub use lockfile::{LockFile, LockedStage};
pub use readers::ReadLocks;
pub use store::{Cache, EntryLock, Manifest};
