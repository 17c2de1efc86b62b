//! The soak's figures: a Markdown table of figure, value and verdict, and for each failed
//! check what failed (the first few).

/// How many lines of detail a failed check prints.
const DETAILS: usize = 20;

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

struct Row {
    figure: String,
    value: String,
    /// `None`: a figure; `Some(passed)`: a check.
    passed: Option<bool>,
    details: Vec<String>,
}

impl Table {
    /// A figure to read, not a check.
    pub fn info(&mut self, figure: &str, value: String) {
        self.rows.push(Row {
            figure: figure.into(),
            value,
            passed: None,
            details: Vec::new(),
        });
    }

    /// A check; `details` say what failed.
    pub fn check(&mut self, figure: &str, value: String, passed: bool, details: &[String]) {
        self.rows.push(Row {
            figure: figure.into(),
            value,
            passed: Some(passed),
            details: if passed { Vec::new() } else { details.to_vec() },
        });
    }

    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed != Some(false))
    }

    /// The table in Markdown, then the details of each failed check.
    pub fn render(&self) -> String {
        let mut out = String::from("| figure | value | check |\n|---|---|---|\n");
        for r in &self.rows {
            let verdict = match r.passed {
                None => "",
                Some(true) => "ok",
                Some(false) => "FAILED",
            };
            out.push_str(&format!("| {} | {} | {verdict} |\n", r.figure, r.value));
        }
        for r in self.rows.iter().filter(|r| r.passed == Some(false)) {
            out.push_str(&format!("\nFAILED: {}\n", r.figure));
            for d in r.details.iter().take(DETAILS) {
                out.push_str(&format!("  - {d}\n"));
            }
            if r.details.len() > DETAILS {
                out.push_str(&format!("  … and {} more\n", r.details.len() - DETAILS));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_fails_the_table_and_says_why() {
        let mut t = Table::default();
        t.info("READY", "12".into());
        t.check("lost", "0".into(), true, &["ignored".into()]);
        assert!(t.passed());
        t.check("generated twice", "1".into(), false, &["CMP k ×2".into()]);
        assert!(!t.passed());
        assert_eq!(
            t.render(),
            "| figure | value | check |\n|---|---|---|\n| READY | 12 |  |\n| lost | 0 | ok |\n| generated twice | 1 | FAILED |\n\nFAILED: generated twice\n  - CMP k ×2\n"
        );
    }
}
