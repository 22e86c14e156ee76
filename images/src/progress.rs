//! Build progress: an indicatif bar when stderr is a terminal, one plain line per step
//! otherwise (CI logs), nothing when quiet. Timings go to stderr only, never into outputs.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cache::Reuse;

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// Always plain lines.
    Plain,
    /// Nothing.
    Quiet,
}

/// Progress of one build.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    done: u64,
}

impl Progress {
    /// Progress over `total` steps.
    pub fn new(total: u64, mode: ProgressMode) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            plain: bar.is_none() && mode != ProgressMode::Quiet,
            bar,
            total,
            done: 0,
        }
    }

    /// A step begins.
    pub fn start(&self, step: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(step.to_owned());
        }
    }

    /// A step ended.
    pub fn finish(&mut self, step: &str, reuse: Option<Reuse>, elapsed: Duration) {
        self.done += 1;
        let how = match reuse {
            Some(Reuse::Hit) => "cached",
            Some(Reuse::Built) => "built",
            None => "done",
        };
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.plain {
            eprintln!(
                "[{:>2}/{}] {step}: {how} in {:.2} s",
                self.done,
                self.total,
                elapsed.as_secs_f64()
            );
        }
    }

    /// The build ended.
    pub fn close(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
