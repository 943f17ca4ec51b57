//! The progress display of a migration, on standard error.
//!
//! On a terminal, one line redrawn in place (`\r`, at most ten times a second): a bar, rows
//! done of the total, the rate and the time left. Otherwise (a log file, a pipe) a plain line
//! every few seconds. The total can grow while the migration runs (the application writes rows
//! that must be done again); the display follows.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);
/// How often a line is written when standard error is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(3);
/// Width of the bar, in characters.
const BAR: usize = 30;

/// Rows done of a total, drawn as they progress.
pub struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last_drawn: Option<Instant>,
    terminal: bool,
    out: Box<dyn Write + Send>,
}

impl Progress {
    /// A display on standard error for `total` rows.
    pub fn stderr(total: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress::new(total, terminal, Box::new(std::io::stderr()))
    }

    /// A display on `out`, drawn in place when `terminal`.
    pub fn new(total: u64, terminal: bool, out: Box<dyn Write + Send>) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            last_drawn: None,
            terminal,
            out,
        }
    }

    /// Counts `rows` more done and redraws when it is time.
    pub fn add(&mut self, rows: u64) {
        self.done += rows;
        self.total = self.total.max(self.done);
        let now = Instant::now();
        let every = if self.terminal { REDRAW } else { LOG_EVERY };
        if self.last_drawn.is_none_or(|at| now - at >= every) {
            self.last_drawn = Some(now);
            self.draw();
        }
    }

    /// Adds rows to the total (rows the application wrote that must be done again).
    pub fn grow(&mut self, rows: u64) {
        self.total += rows;
    }

    /// Rows done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Time since the display started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Draws the final state and ends the line.
    pub fn finish(&mut self) {
        if self.terminal {
            self.draw();
            let _ = writeln!(self.out);
        } else if self.last_drawn.is_some() {
            self.draw();
        }
        let _ = self.out.flush();
    }

    fn draw(&mut self) {
        let line = render(self.done, self.total, self.started.elapsed());
        if self.terminal {
            let _ = write!(self.out, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }
}

/// `[#####.....]  52.3%  104,600/200,000 rows  41,200 rows/s  ETA 0:02`
pub fn render(done: u64, total: u64, elapsed: Duration) -> String {
    let total = total.max(done);
    let fraction = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((fraction * BAR as f64).round() as usize).min(BAR);
    let rate = rate(done, elapsed);
    let eta = if rate > 0.0 {
        clock(Duration::from_secs_f64((total - done) as f64 / rate))
    } else {
        "--:--".to_string()
    };
    format!(
        "[{}{}] {:5.1}%  {}/{} rows  {} rows/s  ETA {eta}",
        "#".repeat(filled),
        ".".repeat(BAR - filled),
        fraction * 100.0,
        thousands(done),
        thousands(total),
        thousands(rate.round() as u64),
    )
}

/// Rows per second.
pub fn rate(rows: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(clock(Duration::from_secs(75)), "1:15");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
    }

    #[test]
    fn the_line_shows_done_total_rate_and_time_left() {
        let line = render(50_000, 200_000, Duration::from_secs(2));
        assert_eq!(
            line,
            "[########......................]  25.0%  50,000/200,000 rows  25,000 rows/s  ETA 0:06"
        );
        assert!(render(0, 0, Duration::ZERO).contains("100.0%"));
        assert!(render(0, 10, Duration::ZERO).contains("ETA --:--"));
        // More done than the total first thought: the total follows.
        assert!(render(12, 10, Duration::from_secs(1)).contains("12/12 rows"));
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_terminal_gets_one_line_redrawn_in_place() {
        let out = Shared::default();
        let mut p = Progress::new(10, true, Box::new(out.clone()));
        p.add(5);
        p.add(5);
        p.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with('\r'), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.trim_end().ends_with("\x1b[K"), "{text:?}");
        assert!(text.contains("10/10 rows"), "{text:?}");
    }

    #[test]
    fn a_log_gets_plain_lines() {
        let out = Shared::default();
        let mut p = Progress::new(10, false, Box::new(out.clone()));
        p.add(5);
        p.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
        assert_eq!(text.lines().count(), 2, "{text:?}");
    }
}
