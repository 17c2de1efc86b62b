//! Text from servers made safe for a terminal. Failure reasons, condition messages, Event
//! notes, file names and ids come from backends and from other people's objects; printed as
//! received, an escape sequence in them could rewrite the screen, retitle the window, hide a
//! line behind `\r` or reorder text with bidirectional controls. Every printing path of the
//! plugin passes such text through [`escape`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` may not reach a terminal as it is: C0 and C1 controls (ESC, CSI, `\r`, `\n`,
/// BEL, …), DEL, and the invisible characters that reorder or break lines (bidirectional
/// marks, embeddings, overrides and isolates; line and paragraph separators).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every [unsafe](is_unsafe) character written as a visible escape (`\r`, `\n`,
/// `\t`, `\u{1b}`); borrowed when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_shown_not_run() {
        for (raw, shown) in [
            ("Quota exceeded", "Quota exceeded"),
            ("naïve 报告 ✓", "naïve 报告 ✓"),
            ("\x1b[2J\x1b[31mred", "\\u{1b}[2J\\u{1b}[31mred"),
            ("\x1b]0;title\x07", "\\u{1b}]0;title\\u{7}"),
            ("ok\rFAILED", "ok\\rFAILED"),
            ("a\nb\tc", "a\\nb\\tc"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("\u{7f}", "\\u{7f}"),
            ("abc\u{202e}fdp.exe", "abc\\u{202e}fdp.exe"),
            ("x\u{2028}y", "x\\u{2028}y"),
        ] {
            assert_eq!(escape(raw), shown, "{raw:?}");
            assert!(!escape(raw).chars().any(is_unsafe), "{raw:?}");
        }
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }
}
