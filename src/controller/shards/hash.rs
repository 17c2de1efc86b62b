//! Which shard a namespace belongs to, the same in every replica and every release:
//! `FNV-1a₆₄(namespace) mod N`. Rust's `DefaultHasher` would not do: its keys are random per
//! process.
//!
//! Not the hash ranges of Kubernetes' server-side sharded list and watch (KEP-5866, alpha
//! since 1.36, the same hash cut into N equal ranges of 2⁶⁴): FNV-1a mixes a name's last
//! bytes into its low bits only, so names that differ at the end (`tenant-1`, `tenant-2`, …)
//! crowd into a few ranges. Measured over `tenant-0` … `tenant-15999` and 16 shards: 700 to
//! 1,400 namespaces per range, 987 to 1,011 per `mod` shard (docs/scaling.md §4).

/// 64-bit FNV-1a, as Go's `hash/fnv` `New64a` computes it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The shard of `namespace` among `shards` (at least 1).
pub fn shard_of(namespace: &str, shards: u16) -> u16 {
    let n = u64::from(shards.max(1));
    // The remainder is below n ≤ u16::MAX.
    u16::try_from(fnv1a64(namespace.as_bytes()) % n).unwrap_or(0)
}

/// How much `identity` wants `shard`, for rendezvous hashing: each replica ranks the shards
/// differently, so replicas that look for free shards at the same moment mostly reach for
/// different ones, and a replica keeps preferring the same shards across restarts of others.
pub fn preference(identity: &str, shard: u16) -> u64 {
    let mut key = Vec::with_capacity(identity.len() + 6);
    key.extend_from_slice(identity.as_bytes());
    key.push(b'/');
    key.extend_from_slice(shard.to_string().as_bytes());
    fnv1a64(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        // The FNV test vectors (Fowler, Noll, Vo), which Go's hash/fnv passes too.
        for (input, hash) in [
            ("", 0xcbf2_9ce4_8422_2325),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            assert_eq!(fnv1a64(input.as_bytes()), hash, "{input:?}");
        }
    }

    #[test]
    fn a_namespace_keeps_its_shard() {
        // Pinned: a change here moves every namespace of every installation to another shard.
        for (namespace, shards, shard) in [
            ("default", 16, 14),
            ("kube-system", 16, 14),
            ("team-a", 16, 6),
            ("billing", 16, 12),
            ("foobar", 16, 8),
            ("billing", 1, 0),
            ("billing", 2, 0),
            ("default", 2, 0),
            ("default", 1024, 510),
            ("billing", 0, 0),
        ] {
            assert_eq!(shard_of(namespace, shards), shard, "{namespace} of {shards}");
        }
    }

    #[test]
    fn namespaces_spread_over_the_shards() {
        let mut counts = [0u32; 16];
        for n in 0..16_000 {
            counts[usize::from(shard_of(&format!("tenant-{n}"), 16))] += 1;
        }
        for c in counts {
            assert!((950..1050).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn replicas_rank_shards_differently() {
        let rank = |identity: &str| {
            let mut shards: Vec<u16> = (0..16).collect();
            shards.sort_by_key(|s| std::cmp::Reverse(preference(identity, *s)));
            shards
        };
        assert_ne!(
            rank("report-operator-7d9f8-abcde"),
            rank("report-operator-7d9f8-fghij")
        );
        assert_eq!(rank("a"), rank("a"));
    }
}
