//! A one-line progress display on stderr for large downloads (no progress-bar crate is in
//! the dependency tree, and one line is all a download needs).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Files smaller than this finish before a progress line would be read.
const SHOW_FROM_BYTES: u64 = 1 << 20;
/// At most this often is the line redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    total: Option<u64>,
    visible: bool,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    /// Shown only on a terminal (a script's log gets no carriage returns), and only when the
    /// file is large or of unknown size.
    pub fn new(total: Option<u64>) -> Progress {
        let large = total.is_none_or(|t| t >= SHOW_FROM_BYTES);
        Progress {
            total,
            visible: large && std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: None,
        }
    }

    pub fn update(&mut self, done: u64) {
        if !self.visible || self.drawn.is_some_and(|d| d.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\x1b[K", line(done, self.total, self.started.elapsed()));
        let _ = err.flush();
    }

    /// Draws the final state and ends the line.
    pub fn finish(mut self, done: u64) {
        if self.visible {
            self.drawn = None;
            self.update(done);
            eprintln!();
        }
    }
}

/// `12.0 MiB of 40.0 MiB (30%), 6.0 MiB/s`.
pub fn line(done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = match elapsed.as_secs_f64() {
        s if s > 0.0 => format!(", {}/s", bytes(((done as f64) / s) as u64)),
        _ => String::new(),
    };
    match total {
        Some(t) if t > 0 => {
            let pct = done.saturating_mul(100) / t;
            format!("{} of {} ({}%){rate}", bytes(done), bytes(t), pct.min(100))
        }
        _ => format!("{}{rate}", bytes(done)),
    }
}

/// A byte count in binary units with one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        let cases = [
            (0, Some(0), 0, "0 B"),
            (512, None, 0, "512 B"),
            (
                12 << 20,
                Some(40 << 20),
                2,
                "12.0 MiB of 40.0 MiB (30%), 6.0 MiB/s",
            ),
            (3 << 30, None, 1, "3.0 GiB, 3.0 GiB/s"),
            // More than the total (a server that lies about its length) stays at 100%.
            (u64::MAX, Some(1), 0, "16777216.0 TiB of 1 B (100%)"),
        ];
        for (done, total, secs, want) in cases {
            assert_eq!(line(done, total, Duration::from_secs(secs)), want);
        }
    }
}
