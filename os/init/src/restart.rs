//! The restart policy: from a component's policy, how it ended and its recent restarts,
//! decides whether it is restarted (and after which delay), left stopped, or given up on as
//! a crash loop. Pure: no clock, no I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use testudo_plan::plan::RestartPolicy;

use crate::Backoff;

/// What happens to a component after it stopped (or failed to launch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not restarted: its policy does not ask for it.
    Stay,
    /// Restarted after `delay`; `attempt` counts the restarts inside the window.
    Restart {
        /// How long to wait.
        delay: Duration,
        /// Restarts inside the window, this one included.
        attempt: u32,
    },
    /// A crash loop: more than the allowed restarts inside the window.
    GiveUp {
        /// Restarts inside the window, this one included.
        attempt: u32,
    },
}

/// Decides after an ending at `now`; `history` holds the times of recent restarts and is
/// updated (entries older than the window dropped, this ending added when the policy asks
/// for a restart).
pub fn decide(
    policy: RestartPolicy,
    success: bool,
    history: &mut VecDeque<Instant>,
    now: Instant,
    backoff: &Backoff,
) -> Decision {
    let restart = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !success,
        RestartPolicy::Never => false,
    };
    if !restart {
        return Decision::Stay;
    }
    while history
        .front()
        .is_some_and(|t| now.duration_since(*t) > backoff.window)
    {
        history.pop_front();
    }
    history.push_back(now);
    let attempt = history.len() as u32;
    if attempt > backoff.max_restarts {
        return Decision::GiveUp { attempt };
    }
    let delay = backoff
        .initial
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(backoff.max);
    Decision::Restart { delay, attempt }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            window: Duration::from_secs(10),
            max_restarts: 4,
        }
    }

    #[test]
    fn the_policy_decides_whether_to_restart() {
        let now = Instant::now();
        let mut history = VecDeque::new();
        let b = backoff();
        assert_eq!(
            decide(RestartPolicy::Never, false, &mut history, now, &b),
            Decision::Stay
        );
        assert_eq!(
            decide(RestartPolicy::OnFailure, true, &mut history, now, &b),
            Decision::Stay
        );
        assert!(history.is_empty());
        assert!(matches!(
            decide(RestartPolicy::OnFailure, false, &mut history, now, &b),
            Decision::Restart { attempt: 1, .. }
        ));
        assert!(matches!(
            decide(RestartPolicy::Always, true, &mut history, now, &b),
            Decision::Restart { attempt: 2, .. }
        ));
    }

    #[test]
    fn the_delay_doubles_up_to_the_maximum() {
        let now = Instant::now();
        let mut history = VecDeque::new();
        let b = backoff();
        let delays: Vec<Duration> = (0..4)
            .map(
                |_| match decide(RestartPolicy::Always, false, &mut history, now, &b) {
                    Decision::Restart { delay, .. } => delay,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 500].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn too_many_restarts_in_the_window_is_a_crash_loop() {
        let now = Instant::now();
        let mut history = VecDeque::new();
        let b = backoff();
        for _ in 0..4 {
            decide(RestartPolicy::Always, false, &mut history, now, &b);
        }
        assert_eq!(
            decide(RestartPolicy::Always, false, &mut history, now, &b),
            Decision::GiveUp { attempt: 5 }
        );
    }

    #[test]
    fn restarts_outside_the_window_are_forgotten() {
        let start = Instant::now();
        let mut history = VecDeque::new();
        let b = backoff();
        for _ in 0..4 {
            decide(RestartPolicy::Always, false, &mut history, start, &b);
        }
        let later = start + Duration::from_secs(11);
        assert_eq!(
            decide(RestartPolicy::Always, false, &mut history, later, &b),
            Decision::Restart {
                delay: Duration::from_millis(100),
                attempt: 1
            }
        );
    }
}
