//! The reference of condition and Event reasons, from the one vocabulary the controllers set
//! them from ([`crate::api::reasons`]): every reason a user can see, by kind and condition,
//! what it means and what to do.

use crate::api::reasons::{self, ReasonDoc};

use super::{GENERATED, Page, cell, code};

pub fn page() -> Page {
    let mut md = format!(
        "{GENERATED}\n\n# Condition reasons\n\n\
         Every reason the operator writes into a condition or an Event, by kind and condition: \
         what it means and what to do. These are the strings `kubectl get reporting` shows in its \
         REASON column and `kubectl describe` in Conditions and Events; the same lists are in \
         `kubectl explain <kind>.status.conditions`. How to read them together: \
         [troubleshooting](../operations/troubleshooting.md).\n\n"
    );
    table(
        &mut md,
        &reasons::all(),
        "Conditions",
        "The `Ready` condition of every kind also shows `KubernetesApiError`, `ReconcileTimeout` and `InternalError` when a reconcile could not finish; the object is retried with backoff.",
    );
    table(
        &mut md,
        &reasons::events(),
        "Events",
        "A problem a condition reports is also a Warning Event under the same reason, once per change of reason.",
    );
    Page {
        file: "reasons.md".into(),
        title: "Condition reasons".into(),
        summary: "every reason of every condition and Event, what it means and what to do".into(),
        markdown: md,
    }
}

/// One section `title` with a table per kind and condition of `docs`, in the order each
/// first appears.
fn table(md: &mut String, docs: &[ReasonDoc], title: &str, note: &str) {
    md.push_str(&format!("## {title}\n\n{note}\n\n"));
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for d in docs {
        if !groups.contains(&(d.kind, d.condition)) {
            groups.push((d.kind, d.condition));
        }
    }
    for group in groups {
        for (i, d) in docs.iter().filter(|d| (d.kind, d.condition) == group).enumerate() {
            if i == 0 {
                let heading = if d.condition == "Event" {
                    format!("### {} Events\n\n", d.kind)
                } else {
                    format!("### {} `{}`\n\n", d.kind, d.condition)
                };
                md.push_str(&format!(
                    "\n{heading}| reason | what it means | what to do |\n|---|---|---|\n"
                ));
            }
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                code(d.reason),
                cell(d.meaning),
                cell(d.action)
            ));
        }
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_of_the_vocabulary_is_on_the_page() {
        let md = page().markdown;
        for d in reasons::all().into_iter().chain(reasons::events()) {
            assert!(
                md.contains(&format!("| `{}` | {} |", d.reason, cell(d.meaning))),
                "{d:?}"
            );
        }
    }
}
