//! Names of the objects a generator derives from its own name: its ReportFiles (generator +
//! window suffix, + organization for SUPPLIER fan-out; generator + backend id for mirrored
//! reports; generator + dates for ONETIME).
//!
//! Every derived name goes through [`derived_name`], so that it is always a valid DNS
//! subdomain (what Kubernetes accepts as an object name): a generator name of 253 characters
//! plus a suffix would otherwise be refused with 422 on every create, forever.

use sha2::Digest;

/// The longest object name Kubernetes accepts (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Hex digits of the hash that keeps a shortened or cleaned-up name unique (40 bits: a
/// collision among one generator's names is not a practical concern).
const HASH_LEN: usize = 10;

/// The name of an object derived from `parts`, joined with `-`: the first part (a generator
/// name, already an object name) keeps its dots; the others (window suffixes, organization
/// and backend ids) are lowercased and every character other than `a-z`, `0-9` and `-`
/// becomes `-`.
///
/// When the joined name is valid and fits, and no character had to be replaced, it is the
/// name, so that names stay readable and stable. Otherwise the name is cut (the first part
/// first, so that the window or id stays visible) and ends in a hash of the parts as given,
/// so that distinct inputs keep distinct names. Case is folded without a hash: ids that
/// differ only in case (UUIDs) name the same report.
pub fn derived_name(parts: &[&str]) -> String {
    let mut lossy = false;
    let cleaned: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let (clean, changed) = clean_part(part, i == 0);
            lossy |= changed;
            clean
        })
        .filter(|p| !p.is_empty())
        .collect();
    let joined = cleaned.join("-");
    if !lossy && joined.len() <= MAX_NAME_LEN && is_dns_subdomain(&joined) {
        return joined;
    }
    let hash = hash_of(parts);
    // Room for the text before `-<hash>`.
    let room = MAX_NAME_LEN - 1 - HASH_LEN;
    let tail = cleaned.get(1..).map(|rest| rest.join("-")).unwrap_or_default();
    let head = match cleaned.first() {
        // Keep the whole tail when at least a few characters of the first part fit beside it.
        Some(first) if !tail.is_empty() && tail.len() + 1 + 8 <= room => {
            let first = trim_to_alnum(cut(first, room - tail.len() - 1));
            if first.is_empty() {
                tail
            } else {
                format!("{first}-{tail}")
            }
        }
        _ => joined,
    };
    let head = trim_to_alnum(cut(&head, room));
    if head.is_empty() {
        format!("x-{hash}")
    } else {
        format!("{head}-{hash}")
    }
}

/// Whether `name` is a valid Kubernetes object name: at most 253 characters of `a-z`, `0-9`,
/// `-` and `.`, in dot-separated labels that start and end with a letter or digit.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            label.starts_with(alnum) && label.ends_with(alnum) && label.chars().all(|c| alnum(c) || c == '-')
        })
}

/// `part` lowercased, with characters a name cannot hold replaced by `-` (dots kept in the
/// first part only, where they separate valid labels), and whether anything besides case
/// changed.
fn clean_part(part: &str, keep_dots: bool) -> (String, bool) {
    let lower = part.to_ascii_lowercase();
    let replaced: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (keep_dots && c == '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = trim_to_alnum(&replaced).to_string();
    let changed = clean != lower;
    (clean, changed)
}

/// The first `max` bytes of an ASCII string.
fn cut(s: &str, max: usize) -> &str {
    // Cleaned parts are ASCII; `get` keeps this safe for any input anyway.
    s.get(..max.min(s.len())).unwrap_or(s)
}

fn trim_to_alnum(s: &str) -> &str {
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
}

/// A hash of the parts as given, separated by NUL so that `["a-b", "c"]` and `["a", "b-c"]`
/// differ.
fn hash_of(parts: &[&str]) -> String {
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut hex: String = digest
        .iter()
        .take(HASH_LEN.div_ceil(2))
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.truncate(HASH_LEN);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_valid_fit_and_keep_short_names_as_they_are() {
        let long = "g".repeat(253);
        let dotted = format!("{}.{}", "a".repeat(120), "b".repeat(132));
        let (umlauts, xs) = ("ü".repeat(300), "x".repeat(400));
        // (parts, the name if it must be exactly that)
        let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
            (vec!["nw-finance", "20181008"], Some("nw-finance-20181008")),
            (
                vec!["nw-finance", "A7F79686-f6a6-4319"],
                Some("nw-finance-a7f79686-f6a6-4319"),
            ),
            (
                vec!["reports.example", "2018w41"],
                Some("reports.example-2018w41"),
            ),
            (vec!["g", "20181008", "org-1"], Some("g-20181008-org-1")),
            (vec![&long, "20181008"], None),
            (
                vec![&long, "20181008", "0f9a3c1e-7d7b-4bd4-8c52-3d7bd8a2e111"],
                None,
            ),
            (vec![&long], None),
            (vec![&dotted, "201810"], None),
            (vec!["g", "Org_1"], None),
            (vec!["g", "--"], None),
            (vec!["g", &umlauts], None),
            (vec!["g", &xs], None),
        ];
        for (parts, exact) in cases {
            let name = derived_name(&parts);
            assert!(is_dns_subdomain(&name), "{parts:?} gave invalid {name:?}");
            assert!(name.len() <= MAX_NAME_LEN, "{parts:?} gave {} chars", name.len());
            if let Some(exact) = exact {
                assert_eq!(name, exact);
            }
        }
    }

    #[test]
    fn shortened_names_keep_the_window_and_stay_distinct() {
        let long = "g".repeat(250);
        let a = derived_name(&[&long, "20181008"]);
        let b = derived_name(&[&long, "20181009"]);
        assert!(a.contains("-20181008-") && b.contains("-20181009-"), "{a} {b}");
        assert_ne!(a, b);
        // Two long generator names that differ only beyond the cut.
        let c = derived_name(&[&format!("{long}a"), "20181008"]);
        let d = derived_name(&[&format!("{long}b"), "20181008"]);
        assert_ne!(c, d);
        // Ids a cleanup would make equal keep distinct names.
        assert_ne!(derived_name(&["g", "org_1"]), derived_name(&["g", "org.1"]));
        assert_ne!(derived_name(&["g", "org_1"]), derived_name(&["g", "org-1"]));
        // The same input always gives the same name.
        assert_eq!(derived_name(&[&long, "20181008"]), a);
    }

    #[test]
    fn dns_subdomain_rules() {
        for (name, ok) in [
            ("a", true),
            ("a.b-c", true),
            ("", false),
            ("-a", false),
            ("a-", false),
            ("a..b", false),
            ("a.-b", false),
            ("A", false),
            ("a_b", false),
        ] {
            assert_eq!(is_dns_subdomain(name), ok, "{name:?}");
        }
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }
}
