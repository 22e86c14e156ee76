//! Confirming the slot GRUB booted: wait for the health condition ([`crate::health`]), then
//! mark the slot good; a slot on trial that is not healthy within
//! [`HealthPolicy::confirm_within`] is rebooted instead, so GRUB counts its next try (or,
//! its tries used up, boots the previous slot and abandons it).

use std::time::Duration;

use testudo_updater::bootloader::grub::{GrubEnv, TRIAL};

use crate::health::{parse_status, HealthPolicy, HealthWatch, Verdict};
use crate::UpdateServiceError;

/// How often init's status is read.
pub const POLL: Duration = Duration::from_millis(500);

/// What confirming needs from the device.
pub trait BootHost {
    /// One full read of init's status (`name state restarts` lines).
    fn status(&mut self) -> Result<String, UpdateServiceError>;
    /// The boot-selection state.
    fn boot_state(&mut self) -> Result<GrubEnv, UpdateServiceError>;
    /// Marks `slot` good (`OK=1`, `TRY=0`, no longer on trial), durably.
    fn mark_good(&mut self, slot: &str) -> Result<(), UpdateServiceError>;
    /// Asks init to reboot the device.
    fn reboot(&mut self) -> Result<(), UpdateServiceError>;
    /// Time since confirming started.
    fn elapsed(&self) -> Duration;
    /// Waits before the next look.
    fn sleep(&mut self, duration: Duration);
    /// One line for the log.
    fn say(&mut self, line: &str);
}

/// How confirming ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// The slot is marked good.
    Confirmed {
        /// The slot.
        slot: String,
        /// Whether it was on trial (its first good boot since an update).
        trial: bool,
        /// How long it took.
        after: Duration,
    },
    /// The slot was on trial and not healthy in time: init was asked to reboot.
    Rebooting {
        /// The slot.
        slot: String,
        /// Why it was not healthy.
        reason: String,
    },
}

/// Confirms `booted` (the bootname GRUB booted) under `policy`.
pub fn confirm_boot(
    host: &mut dyn BootHost,
    booted: &str,
    policy: HealthPolicy,
) -> Result<Confirmation, UpdateServiceError> {
    let env = host.boot_state()?;
    if !env.order().iter().any(|slot| slot == booted) {
        return Err(UpdateServiceError::UnknownSlot {
            slot: booted.to_owned(),
        });
    }
    let trial = env.get(TRIAL) == Some(booted);
    let try_count = env.get(&format!("{booted}_TRY")).unwrap_or("?");
    host.say(&format!(
        "slot {booted} booted (try {try_count}, {}); confirming once every component has run for {}s without a restart",
        if trial { "on trial after an update" } else { "confirmed before" },
        policy.stable_for.as_secs()
    ));
    let mut watch = HealthWatch::new(policy);
    let mut warned = false;
    loop {
        let now = host.elapsed();
        let text = host.status()?;
        let verdict = watch.observe(&parse_status(&text)?, now);
        let reason = match verdict {
            Verdict::Healthy => {
                host.mark_good(booted)?;
                host.say(&format!(
                    "slot {booted} confirmed good after {:.1}s",
                    now.as_secs_f64()
                ));
                return Ok(Confirmation::Confirmed {
                    slot: booted.to_owned(),
                    trial,
                    after: now,
                });
            }
            Verdict::NotYet(reason) => reason,
        };
        if now >= policy.confirm_within {
            if trial {
                host.say(&format!(
                    "slot {booted} on trial is not healthy after {}s ({reason}): rebooting",
                    policy.confirm_within.as_secs()
                ));
                host.reboot()?;
                return Ok(Confirmation::Rebooting {
                    slot: booted.to_owned(),
                    reason,
                });
            }
            if !warned {
                host.say(&format!(
                    "slot {booted} is not healthy after {}s ({reason}); it confirmed before, so it is not rebooted",
                    policy.confirm_within.as_secs()
                ));
                warned = true;
            }
        }
        host.sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted device: the status text at each look, the grubenv, and what was done.
    struct Scripted {
        statuses: Vec<String>,
        looks: usize,
        env: GrubEnv,
        clock: Duration,
        rebooted: bool,
        said: Vec<String>,
    }

    impl Scripted {
        fn new(env: GrubEnv, statuses: &[&str]) -> Scripted {
            Scripted {
                statuses: statuses.iter().map(|s| s.to_string()).collect(),
                looks: 0,
                env,
                clock: Duration::ZERO,
                rebooted: false,
                said: Vec::new(),
            }
        }
    }

    impl BootHost for Scripted {
        fn status(&mut self) -> Result<String, UpdateServiceError> {
            let text = self.statuses[self.looks.min(self.statuses.len() - 1)].clone();
            self.looks += 1;
            Ok(text)
        }
        fn boot_state(&mut self) -> Result<GrubEnv, UpdateServiceError> {
            Ok(self.env.clone())
        }
        fn mark_good(&mut self, slot: &str) -> Result<(), UpdateServiceError> {
            self.env.set(&format!("{slot}_OK"), "1");
            self.env.set(&format!("{slot}_TRY"), "0");
            self.env.remove(TRIAL);
            Ok(())
        }
        fn reboot(&mut self) -> Result<(), UpdateServiceError> {
            self.rebooted = true;
            Ok(())
        }
        fn elapsed(&self) -> Duration {
            self.clock
        }
        fn sleep(&mut self, duration: Duration) {
            self.clock += duration;
        }
        fn say(&mut self, line: &str) {
            self.said.push(line.to_owned());
        }
    }

    fn booted_b(trial: bool) -> GrubEnv {
        let mut env = GrubEnv::initial(&["A", "B"]);
        env.set("ORDER", "B A");
        env.set("B_TRY", "1");
        if trial {
            env.set(TRIAL, "B");
        }
        env
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            stable_for: Duration::from_secs(5),
            confirm_within: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_healthy_trial_is_confirmed_and_leaves_the_trial() {
        let mut host = Scripted::new(booted_b(true), &["a waiting 0\n", "a running 0\n"]);
        let outcome = confirm_boot(&mut host, "B", policy()).unwrap();
        assert_eq!(
            outcome,
            Confirmation::Confirmed {
                slot: "B".into(),
                trial: true,
                after: Duration::from_millis(5500)
            }
        );
        assert_eq!(host.env.get("B_TRY"), Some("0"));
        assert_eq!(host.env.get(TRIAL), None);
        assert!(!host.rebooted);
    }

    #[test]
    fn an_unhealthy_trial_is_rebooted_in_time_and_not_marked() {
        let mut host = Scripted::new(booted_b(true), &["a running 0\nb backoff 1\n"]);
        let outcome = confirm_boot(&mut host, "B", policy()).unwrap();
        assert_eq!(
            outcome,
            Confirmation::Rebooting {
                slot: "B".into(),
                reason: "b backoff".into()
            }
        );
        assert!(host.rebooted);
        assert_eq!(host.clock, Duration::from_secs(30));
        assert_eq!(host.env.get("B_TRY"), Some("1"), "marked good");
        assert!(host.said.last().unwrap().contains("rebooting"));
    }

    #[test]
    fn a_slot_that_confirmed_before_waits_for_health_without_rebooting() {
        let mut statuses = vec!["a failed 3\n"; 200];
        statuses.push("a running 3\n");
        let mut host = Scripted::new(booted_b(false), &statuses);
        let outcome = confirm_boot(&mut host, "B", policy()).unwrap();
        assert!(matches!(
            outcome,
            Confirmation::Confirmed { trial: false, .. }
        ));
        assert!(!host.rebooted);
        let warnings = host
            .said
            .iter()
            .filter(|l| l.contains("not rebooted"))
            .count();
        assert_eq!(warnings, 1, "{:?}", host.said);
    }

    #[test]
    fn a_slot_the_grubenv_does_not_know_is_an_error() {
        let mut host = Scripted::new(booted_b(false), &["a running 0\n"]);
        let error = confirm_boot(&mut host, "C", policy()).unwrap_err();
        assert!(matches!(error, UpdateServiceError::UnknownSlot { .. }));
    }
}
