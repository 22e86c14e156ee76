//! What the benchmarks print durations with: the median of samples, milliseconds, seconds.
#![allow(dead_code)] // each bench binary uses its own part

use std::time::Duration;

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Milliseconds.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Seconds, right-aligned for a table column.
pub fn seconds(duration: Duration) -> String {
    format!("{:>7.2} s", duration.as_secs_f64())
}
