//! The progress line of a long run on stderr: on a terminal one line rewritten in place
//! (`nsq_to_file: 12840 messages, 2113/s`), elsewhere a plain line now and then, so that logs
//! collected from a pipe stay readable.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the line is redrawn on a terminal.
const LIVE_EVERY: Duration = Duration::from_millis(500);
/// How often a plain line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// How progress is shown.
///
/// ```
/// use nsq_tools::rate::Display;
/// // A tool whose data goes to stdout keeps the live line off a terminal that shows the data.
/// let display = Display::detect(true);
/// # let _ = display;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// One line on a terminal, rewritten in place.
    Live,
    /// A plain line every so often.
    Plain,
    /// Nothing.
    Off,
}

impl Display {
    /// [`Live`](Self::Live) when stderr is a terminal, [`Plain`](Self::Plain) otherwise.
    /// `data_on_stdout`: the tool writes its data to stdout; when stdout is the same kind of
    /// terminal, a line redrawn on stderr would tear the data lines, so there is none then.
    pub fn detect(data_on_stdout: bool) -> Self {
        match (std::io::stderr().is_terminal(), data_on_stdout) {
            (true, true) if std::io::stdout().is_terminal() => Self::Off,
            (true, _) => Self::Live,
            (false, _) => Self::Plain,
        }
    }

    fn every(self) -> Option<Duration> {
        match self {
            Self::Live => Some(LIVE_EVERY),
            Self::Plain => Some(PLAIN_EVERY),
            Self::Off => None,
        }
    }
}

/// A count that the tool adds to and the progress line reads.
///
/// ```
/// let counter = nsq_tools::rate::Counter::default();
/// counter.add(3);
/// assert_eq!(counter.get(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Turns counts into progress lines: the total and the rate since the previous line.
///
/// ```
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// let mut meter = nsq_tools::rate::Meter::new("to_nsq", "published", start);
/// let line = meter.line(500, start + Duration::from_secs(2));
/// assert_eq!(line, "to_nsq: 500 published, 250/s");
/// ```
#[derive(Debug)]
pub struct Meter {
    label: &'static str,
    noun: &'static str,
    start: Instant,
    last: (Instant, u64),
}

impl Meter {
    /// A meter labelled `label` counting `noun` (say `messages` or `published`) from `start`.
    pub fn new(label: &'static str, noun: &'static str, start: Instant) -> Self {
        Self {
            label,
            noun,
            start,
            last: (start, 0),
        }
    }

    /// The line for `total` at `now`, with the rate since the last line.
    pub fn line(&mut self, total: u64, now: Instant) -> String {
        let (then, before) = self.last;
        let rate = per_second(
            total.saturating_sub(before),
            now.saturating_duration_since(then),
        );
        self.last = (now, total);
        format!("{}: {total} {}, {rate}/s", self.label, self.noun)
    }

    /// The closing line: the total and the mean rate over the whole run.
    pub fn summary(&self, total: u64, now: Instant) -> String {
        let elapsed = now.saturating_duration_since(self.start);
        let rate = per_second(total, elapsed);
        format!(
            "{}: {total} {} in {:.1}s, {rate}/s",
            self.label,
            self.noun,
            elapsed.as_secs_f64()
        )
    }
}

fn per_second(count: u64, over: Duration) -> u64 {
    if over.is_zero() {
        return 0;
    }
    (count as f64 / over.as_secs_f64()).round() as u64
}

/// The progress line, drawn by a task until [`finish`](Self::finish).
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() {
/// use nsq_tools::rate::{Counter, Display, RateLine};
/// let counter = Counter::default();
/// let line = RateLine::start("nsq_tail", "messages", counter.clone(), Display::detect(true));
/// counter.add(1);
/// line.finish().await;
/// # }
/// ```
#[derive(Debug)]
pub struct RateLine {
    task: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl RateLine {
    /// Starts drawing `counter` as `label: N noun, R/s` on stderr.
    pub fn start(
        label: &'static str,
        noun: &'static str,
        counter: Counter,
        display: Display,
    ) -> Self {
        let Some(every) = display.every() else {
            return Self { task: None };
        };
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut meter = Meter::new(label, noun, start);
            let mut ticks = tokio::time::interval_at((start + every).into(), every);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        let line = meter.line(counter.get(), Instant::now());
                        draw(display, &line, false);
                    }
                    _ = &mut stop_rx => break,
                }
            }
            draw(display, &meter.summary(counter.get(), Instant::now()), true);
        });
        Self {
            task: Some((stop_tx, task)),
        }
    }

    /// Stops the line and writes the summary (the total and the mean rate).
    pub async fn finish(mut self) {
        if let Some((stop, task)) = self.task.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// Writes one progress line: in place on a terminal, as a plain line otherwise.
fn draw(display: Display, line: &str, last: bool) {
    let mut err = std::io::stderr().lock();
    let _ = match (display, last) {
        (Display::Live, false) => write!(err, "\r\x1b[2K{line}"),
        (Display::Live, true) => writeln!(err, "\r\x1b[2K{line}"),
        _ => writeln!(err, "{line}"),
    };
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_over_the_last_interval_and_the_summary_over_the_run() {
        let start = Instant::now();
        let mut meter = Meter::new("t", "messages", start);
        assert_eq!(
            meter.line(100, start + Duration::from_secs(1)),
            "t: 100 messages, 100/s"
        );
        assert_eq!(
            meter.line(100, start + Duration::from_secs(2)),
            "t: 100 messages, 0/s"
        );
        assert_eq!(
            meter.line(400, start + Duration::from_secs(3)),
            "t: 400 messages, 300/s"
        );
        assert_eq!(
            meter.summary(400, start + Duration::from_secs(4)),
            "t: 400 messages in 4.0s, 100/s"
        );
    }

    #[test]
    fn no_time_no_rate() {
        let start = Instant::now();
        assert_eq!(Meter::new("t", "x", start).line(5, start), "t: 5 x, 0/s");
    }
}
