#![allow(clippy::unwrap_used)]
mod common;
use std::sync::Arc;
use std::time::Duration;
use testudo_wasm_host::{AppLimits, Grants, LocalDevice};
#[test]
fn dbg() {
    for app in ["hostile/spin", "hostile/memory"] {
        let t = std::time::Instant::now();
        let ran = common::run(&common::build(app, &[]), Grants::default(), AppLimits { memory_bytes: 16 << 20, cpu_time: Some(Duration::from_millis(300)), output_bytes: 1 << 20, ..AppLimits::default() }, Arc::new(LocalDevice::new()));
        eprintln!("{app}: {:?} in {:?} stdout {}", ran.outcome, t.elapsed(), ran.stdout);
    }
}
