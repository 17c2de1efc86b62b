//! Several replicas share the work (`--sharding`): namespaces fall into a fixed number of
//! shards, each shard has a Lease in the release namespace, and a replica reconciles the
//! namespaces of the shards whose Lease it holds (docs/scaling.md §4, option (a)).
//!
//! - [`hash`]: which shard a namespace is in, `FNV-1a₆₄(namespace) mod N`.
//! - [`plan`]: which Leases to take, renew, release or forget, given the Leases as last seen,
//!   what is held and the time (pure, table-tested).
//! - [`leases`]: the thin I/O around the plan, and a watchdog per held shard (`leader`'s).
//! - [`held`]: what is held, as the event filters, the reconciles (`guard`) and the metrics
//!   see it.
//!
//! Every replica watches everything (warm standbys): users' objects are never labelled or
//! touched to place them, every cache and the index stay whole (the cross-namespace checks
//! stay exact), and a replica that takes a shard queues its objects from its caches at once,
//! without a relist. The price is that every replica holds every object in memory.

mod hash;
mod held;
mod leases;
mod plan;

pub use hash::shard_of;
pub use held::Shards;
pub use leases::{Config, OnTakeover, check_prefix, run};
