//! Several replicas share the work: namespaces in shards, one Lease per shard.
mod hash;
mod plan;
