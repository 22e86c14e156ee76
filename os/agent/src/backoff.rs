//! Reconnect delays: exponential backoff with full jitter (AWS architecture blog's "full
//! jitter"), so a fleet that lost its hub at the same moment does not return in lockstep.

use std::time::Duration;

/// Backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first delay.
    pub initial: Duration,
    /// Largest upper bound.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Upper bound of the delay before attempt `attempt` (0-based): `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt `attempt`, uniformly drawn from `[ceiling/2, ceiling]` using
    /// `unit` in `[0, 1)` (half jitter keeps a floor, so a throttled hub is not hammered).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ceiling.mul_f64(0.5 + unit / 2.0)
    }

    /// [`Self::delay`] with a random draw.
    pub fn random_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(10), Duration::from_secs(2));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_within_half_to_full_ceiling() {
        let b = Backoff::default();
        assert_eq!(b.delay(2, 0.0), b.ceiling(2) / 2);
        assert_eq!(b.delay(2, 1.0), b.ceiling(2));
        assert_eq!(b.delay(2, f64::NAN), b.ceiling(2) / 2);
        for _ in 0..100 {
            let d = b.random_delay(4);
            assert!(d >= b.ceiling(4) / 2 && d <= b.ceiling(4));
        }
    }
}
