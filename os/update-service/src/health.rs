//! The health condition under which the device confirms the slot it booted, judged from init's
//! status lines (`name state restarts`, `testudo_plan::interfaces::STATUS`):
//!
//! - every component has settled: `running`, or `exited` (ended by its own restart policy), or
//!   an `empty` app slot — nothing `waiting`, in `backoff`, `failed` or `not-started`;
//! - and it stayed so, with no restart anywhere, for [`HealthPolicy::stable_for`].
//!
//! A crash-looping component never lets the system become healthy: each restart starts the
//! stable period again. When a component relays OS updates (the cloud agent), a slot on trial
//! is healthy only once that relay has also reached the cloud
//! ([`HealthPolicy::require_connected`]). Decisions 0090, 0091.

use std::collections::BTreeMap;
use std::time::Duration;

use testudo_plan::interfaces::{parse_status_line, ComponentState};

use crate::UpdateServiceError;

/// How long the system must stay healthy, and how long a slot on trial gets to get there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Every component settled and no restart for this long.
    pub stable_for: Duration,
    /// A slot on trial not healthy this long after the updater started is rebooted.
    pub confirm_within: Duration,
    /// A slot on trial also needs the relay (the cloud agent) to have reached the cloud
    /// since boot: set when a component relays OS updates to the updater, since an update that cuts the
    /// device off from its fleet cannot be corrected from there.
    pub require_connected: bool,
}

impl Default for HealthPolicy {
    /// 10 s stable, within 180 s (a board under emulation starts slowly).
    fn default() -> Self {
        HealthPolicy {
            stable_for: Duration::from_secs(10),
            confirm_within: Duration::from_secs(180),
            require_connected: false,
        }
    }
}

/// Every component's state and restart count, by name.
pub type Snapshot = BTreeMap<String, (ComponentState, u32)>;

/// Parses one read of init's status.
pub fn parse_status(text: &str) -> Result<Snapshot, UpdateServiceError> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            parse_status_line(line)
                .map(|(name, state, restarts)| (name.to_owned(), (state, restarts)))
                .ok_or_else(|| UpdateServiceError::StatusLine {
                    line: line.to_owned(),
                })
        })
        .collect()
}

/// What the watch concluded from the latest snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy: confirm.
    Healthy,
    /// Not (yet): why, e.g. `sensor backoff`, or `stable for 2s of 10s`.
    NotYet(String),
}

/// Watches successive snapshots for the health condition.
#[derive(Debug, Clone)]
pub struct HealthWatch {
    policy: HealthPolicy,
    /// Since when everything has been settled, and every component's restart count then.
    settled_since: Option<(Duration, BTreeMap<String, u32>)>,
}

impl HealthWatch {
    /// A watch under `policy`.
    pub fn new(policy: HealthPolicy) -> HealthWatch {
        HealthWatch {
            policy,
            settled_since: None,
        }
    }

    /// Judges `snapshot`, taken at `now` (time since the watch started).
    pub fn observe(&mut self, snapshot: &Snapshot, now: Duration) -> Verdict {
        if snapshot.is_empty() {
            self.settled_since = None;
            return Verdict::NotYet("init reports no components".into());
        }
        let unsettled: Vec<String> = snapshot
            .iter()
            .filter(|(_, (state, _))| {
                !matches!(
                    state,
                    ComponentState::Running | ComponentState::Exited | ComponentState::Empty
                )
            })
            .map(|(name, (state, _))| format!("{name} {}", state.label()))
            .collect();
        if !unsettled.is_empty() {
            self.settled_since = None;
            return Verdict::NotYet(unsettled.join(", "));
        }
        // Any change — a restart, a component appearing or gone — starts the period again.
        let restarts: BTreeMap<String, u32> = snapshot
            .iter()
            .map(|(name, (_, count))| (name.clone(), *count))
            .collect();
        let since = match &self.settled_since {
            Some((since, counted)) if *counted == restarts => *since,
            _ => {
                self.settled_since = Some((now, restarts));
                now
            }
        };
        let stable = now.saturating_sub(since);
        if stable >= self.policy.stable_for {
            Verdict::Healthy
        } else {
            Verdict::NotYet(format!(
                "stable for {:.1}s of {:.1}s",
                stable.as_secs_f64(),
                self.policy.stable_for.as_secs_f64()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str) -> Snapshot {
        parse_status(text).unwrap()
    }

    fn watch() -> HealthWatch {
        HealthWatch::new(HealthPolicy {
            stable_for: Duration::from_secs(10),
            confirm_within: Duration::from_secs(60),
            require_connected: false,
        })
    }

    const SETTLED: &str = "agent running 0\nlog running 0\nslot:cloud-app empty 0\nonce exited 0\n";

    #[test]
    fn settled_components_become_healthy_after_the_stable_period() {
        let mut watch = watch();
        let s = snapshot(SETTLED);
        assert!(matches!(
            watch.observe(&s, Duration::ZERO),
            Verdict::NotYet(_)
        ));
        assert!(matches!(
            watch.observe(&s, Duration::from_secs(9)),
            Verdict::NotYet(_)
        ));
        assert_eq!(watch.observe(&s, Duration::from_secs(10)), Verdict::Healthy);
    }

    #[test]
    fn a_restart_starts_the_stable_period_again() {
        let mut watch = watch();
        watch.observe(&snapshot(SETTLED), Duration::ZERO);
        let restarted = snapshot("agent running 1\nlog running 0\n");
        assert!(matches!(
            watch.observe(&restarted, Duration::from_secs(8)),
            Verdict::NotYet(_)
        ));
        assert!(matches!(
            watch.observe(&restarted, Duration::from_secs(17)),
            Verdict::NotYet(_)
        ));
        assert_eq!(
            watch.observe(&restarted, Duration::from_secs(18)),
            Verdict::Healthy
        );
    }

    #[test]
    fn a_crash_looping_component_is_never_healthy_and_is_named() {
        let mut watch = watch();
        for second in 0..100 {
            let state = if second % 3 == 0 {
                "backoff"
            } else {
                "running"
            };
            let s = snapshot(&format!("log running 0\nsensor {state} {}\n", second / 3));
            let verdict = watch.observe(&s, Duration::from_secs(second));
            assert_ne!(verdict, Verdict::Healthy, "at {second}s");
            if state == "backoff" {
                assert_eq!(verdict, Verdict::NotYet("sensor backoff".into()));
            }
        }
    }

    #[test]
    fn failed_waiting_and_missing_components_are_not_healthy() {
        for state in ["failed", "waiting", "not-started", "backoff"] {
            let mut watch = watch();
            let s = snapshot(&format!("log running 0\nx {state} 0\n"));
            for second in [0, 100, 1000] {
                assert_eq!(
                    watch.observe(&s, Duration::from_secs(second)),
                    Verdict::NotYet(format!("x {state}"))
                );
            }
        }
    }

    #[test]
    fn a_restart_hidden_by_a_component_leaving_still_counts_and_nothing_is_not_healthy() {
        let mut watch = watch();
        watch.observe(&snapshot("a running 0\nb running 2\n"), Duration::ZERO);
        // a restarted once, b left the list: the sum is the same, the system is not.
        let changed = snapshot("a running 1\nc running 1\n");
        assert!(matches!(
            watch.observe(&changed, Duration::from_secs(10)),
            Verdict::NotYet(_)
        ));
        assert_eq!(
            watch.observe(&Snapshot::new(), Duration::from_secs(100)),
            Verdict::NotYet("init reports no components".into())
        );
    }

    #[test]
    fn a_line_that_is_not_a_status_line_is_an_error() {
        let error = parse_status("log running 0\nlog is fine\n").unwrap_err();
        assert!(error.to_string().contains("\"log is fine\""), "{error}");
    }
}
