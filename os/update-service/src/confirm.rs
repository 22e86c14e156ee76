//! Confirming the slot GRUB booted: a slot that confirmed before at once; a slot on trial once
//! the health condition holds ([`crate::health`]). A trial that is not healthy within
//! [`HealthPolicy::confirm_within`] of boot is rebooted instead, so GRUB counts its next try
//! (or, its tries used up, boots the previous slot and abandons it).

use std::time::Duration;

use testudo_updater::bootloader::grub::{GrubEnv, TRIAL};

use crate::health::{parse_status, HealthPolicy, HealthWatch, Verdict};
use crate::UpdateServiceError;

/// Why a trial that is otherwise healthy is not confirmed yet.
pub const NOT_CONNECTED: &str = "the cloud agent has not reached the cloud";

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
    /// Whether the relay has reached the cloud since boot.
    fn connected(&mut self) -> bool;
    /// Time since the device booted (so a restarted updater keeps the same deadline).
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
///
/// A slot that confirmed before is marked good at once: its boot reached user space, which
/// is all GRUB's counter is there to check, and waiting for health would let a slot that is
/// merely degraded (or cut off by power during boot a few times) use up its tries and make
/// GRUB fall back to the older slot — a silent downgrade. Only a slot on trial waits for the
/// health condition; when that fails, or anything goes wrong while waiting (the updater
/// itself broken by the update), it is rebooted once [`HealthPolicy::confirm_within`] has
/// passed since boot.
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
    if !trial {
        host.say(&format!(
            "slot {booted} booted (try {try_count}, confirmed before): marking it good"
        ));
        return confirmed(host, booted, false);
    }
    host.say(&format!(
        "slot {booted} booted (try {try_count}, on trial after an update); confirming once every component has run for {}s without a restart",
        policy.stable_for.as_secs()
    ));
    let reason = match watch_trial(host, policy) {
        Ok(None) => return confirmed(host, booted, true),
        Ok(Some(reason)) => reason,
        Err(error) => {
            let reason = testudo_error_chain::error_chain(&error);
            host.say(&format!("slot {booted} on trial: {reason}"));
            while host.elapsed() < policy.confirm_within {
                host.sleep(POLL);
            }
            reason
        }
    };
    host.say(&format!(
        "slot {booted} on trial is not healthy after {}s ({reason}): rebooting",
        policy.confirm_within.as_secs()
    ));
    host.reboot()?;
    Ok(Confirmation::Rebooting {
        slot: booted.to_owned(),
        reason,
    })
}

/// Marks `booted` good and says so.
fn confirmed(
    host: &mut dyn BootHost,
    booted: &str,
    trial: bool,
) -> Result<Confirmation, UpdateServiceError> {
    host.mark_good(booted)?;
    let after = host.elapsed();
    host.say(&format!(
        "slot {booted} confirmed good {:.1}s after boot",
        after.as_secs_f64()
    ));
    Ok(Confirmation::Confirmed {
        slot: booted.to_owned(),
        trial,
        after,
    })
}

/// Watches init's status until the system is healthy (None) or the deadline passed (the last
/// reason it was not).
fn watch_trial(
    host: &mut dyn BootHost,
    policy: HealthPolicy,
) -> Result<Option<String>, UpdateServiceError> {
    let mut watch = HealthWatch::new(policy);
    loop {
        let now = host.elapsed();
        let text = host.status()?;
        match watch.observe(&parse_status(&text)?, now) {
            Verdict::Healthy if !policy.require_connected || host.connected() => return Ok(None),
            Verdict::Healthy if now >= policy.confirm_within => {
                return Ok(Some(NOT_CONNECTED.to_owned()))
            }
            Verdict::Healthy => host.sleep(POLL),
            Verdict::NotYet(reason) if now >= policy.confirm_within => return Ok(Some(reason)),
            Verdict::NotYet(_) => host.sleep(POLL),
        }
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
        connected_after: Option<Duration>,
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
                connected_after: None,
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
        fn connected(&mut self) -> bool {
            self.connected_after
                .is_some_and(|after| self.clock >= after)
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
            require_connected: false,
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
        assert_eq!(host.env.get("B_TRY"), Some("1"), "B was marked good");
        assert!(host.said.last().unwrap().contains("rebooting"));
    }

    #[test]
    fn a_slot_that_confirmed_before_is_marked_good_at_once_whatever_its_health() {
        // A degraded system (or a few power cuts during boot) must not use up the tries of
        // the slot that already proved itself: GRUB would fall back to the older one.
        let mut host = Scripted::new(booted_b(false), &["a failed 3\n"]);
        let outcome = confirm_boot(&mut host, "B", policy()).unwrap();
        assert_eq!(
            outcome,
            Confirmation::Confirmed {
                slot: "B".into(),
                trial: false,
                after: Duration::ZERO
            }
        );
        assert_eq!(host.looks, 0, "status read although not needed");
        assert_eq!(host.env.get("B_TRY"), Some("0"));
        assert!(!host.rebooted);
    }

    #[test]
    fn a_trial_whose_status_cannot_be_read_is_rebooted_at_the_deadline() {
        // The update broke what the updater reads: it still gives up on the trial.
        let mut host = Scripted::new(booted_b(true), &["a running 0\nnot a status line\n"]);
        let outcome = confirm_boot(&mut host, "B", policy()).unwrap();
        let Confirmation::Rebooting { reason, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("not a status line"), "{reason}");
        assert!(host.rebooted);
        assert_eq!(host.clock, Duration::from_secs(30));
        assert_eq!(host.env.get("B_TRY"), Some("1"));
    }

    #[test]
    fn a_trial_that_needs_the_cloud_waits_for_the_agent_and_is_rebooted_without_it() {
        let needs_cloud = HealthPolicy {
            require_connected: true,
            ..policy()
        };
        let mut host = Scripted::new(booted_b(true), &["a running 0\n"]);
        host.connected_after = Some(Duration::from_secs(12));
        let outcome = confirm_boot(&mut host, "B", needs_cloud).unwrap();
        assert_eq!(
            outcome,
            Confirmation::Confirmed {
                slot: "B".into(),
                trial: true,
                after: Duration::from_secs(12)
            },
            "healthy after 5 s, but confirmed only once the agent reached the cloud"
        );

        let mut cut_off = Scripted::new(booted_b(true), &["a running 0\n"]);
        let outcome = confirm_boot(&mut cut_off, "B", needs_cloud).unwrap();
        assert_eq!(
            outcome,
            Confirmation::Rebooting {
                slot: "B".into(),
                reason: NOT_CONNECTED.into()
            }
        );
        assert_eq!(cut_off.env.get("B_TRY"), Some("1"));

        let mut not_on_trial = Scripted::new(booted_b(false), &["a running 0\n"]);
        confirm_boot(&mut not_on_trial, "B", needs_cloud).unwrap();
        assert_eq!(
            not_on_trial.env.get("B_TRY"),
            Some("0"),
            "a confirmed slot never waits"
        );
    }

    #[test]
    fn a_slot_the_grubenv_does_not_know_is_an_error() {
        let mut host = Scripted::new(booted_b(false), &["a running 0\n"]);
        let error = confirm_boot(&mut host, "C", policy()).unwrap_err();
        assert!(matches!(error, UpdateServiceError::UnknownSlot { .. }));
    }
}
