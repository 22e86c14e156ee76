//! `testudo check` cost, split into its phases, on the gateway example and on a generated
//! config with 1,000 components and 5,000 routes (4,995 component routes + 5 slot routes).
//!
//! Run: `cargo bench -p testudo-config --bench check`. Figures: `docs/benchmarks.md`.
//! `TESTUDO_BENCH_KEEP_CONFIG=/tmp/generated.ncl` also keeps the generated config (it imports
//! the schema by absolute path, so it works from anywhere on this machine).
//! Goals (the anchor): gateway < 0.3 s, generated < 3 s.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use testudo_config::{load, load_plan, validate, SystemConfig};

const COMPONENTS: usize = 1000;
const ROUTES_PER_COMPONENT: usize = 5;

/// Writes the generated config (deterministic: no randomness, only index arithmetic).
fn generated_config(dir: &Path) -> PathBuf {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/system.ncl");
    let board = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/boards/qemu-x86_64.ncl");
    let mut src = format!(
        "let S = import \"{}\" in\nlet MiB = S.units.MiB in\n{{\n  name = \"generated\",\n  version = \"1.0.0\",\n  compatible = \"bench\",\n  board = import \"{}\",\n  components = {{\n",
        schema.display(),
        board.display()
    );
    let name = |i: usize| format!("c{i:04}");
    let iface = |i: usize| format!("if{}", i % 7);
    for i in 0..COMPONENTS {
        let _ = write!(
            src,
            "    {} = {{\n      kind = 'service,\n      run = {{ binary = \"svc-{i}\" }},\n      provides.cap{i} = {{ interface = \"{}\" }},\n      limits.memory_bytes = 1 * MiB,\n",
            name(i),
            iface(i)
        );
        if i > 0 {
            src.push_str("      uses = {\n");
            for k in 0..ROUTES_PER_COMPONENT {
                // A lower-index provider: the graph is a DAG by construction.
                let j = (i * 31 + k * 17) % i;
                let _ = writeln!(
                    src,
                    "        u{k} = {{ from = \"{}.cap{j}\", interface = \"{}\", rights = 'read }},",
                    name(j),
                    iface(j)
                );
            }
            src.push_str("      },\n");
        }
        src.push_str("    },\n");
    }
    src.push_str("  },\n  app_slots.bench = {\n    max_uses = {\n");
    for k in 0..5 {
        let j = 100 * k + 3;
        let _ = writeln!(
            src,
            "      s{k} = {{ from = \"{}.cap{j}\", interface = \"{}\", rights = 'read }},",
            name(j),
            iface(j)
        );
    }
    src.push_str(
        "    },\n    limits.memory_bytes = 16 * MiB,\n  },\n  cloud = { hub = \"hub.example.net\", device_id = \"bench\", identity = 'sas },\n} | S.System\n",
    );
    let path = dir.join("generated.ncl");
    std::fs::write(&path, src).expect("write the generated config");
    path
}

fn phases(c: &mut Criterion, label: &str, path: &Path, samples: usize, secs: u64) {
    // Sanity: the config is valid and has the size we claim.
    let (plan, _) = load_plan(path).expect("benchmark config is valid");
    eprintln!(
        "{label}: {} components, {} routes",
        plan.components.len(),
        plan.routes().len()
    );
    let json = load::evaluate(path).expect("benchmark config evaluates");
    let config = SystemConfig::from_json(&json).expect("benchmark config deserialises");
    print_split(label, path, 5);

    let mut group = c.benchmark_group(format!("check/{label}"));
    group.sample_size(samples);
    group.measurement_time(Duration::from_secs(secs));
    group.bench_function("total (load_plan)", |b| {
        b.iter(|| load_plan(black_box(path)).expect("valid"))
    });
    group.bench_function("nickel evaluation + export", |b| {
        b.iter(|| load::evaluate(black_box(path)).expect("evaluates"))
    });
    group.bench_function("deserialise", |b| {
        b.iter(|| SystemConfig::from_json(black_box(&json)).expect("deserialises"))
    });
    group.bench_function("graph validation", |b| {
        b.iter(|| validate::validate(black_box(&config)).expect("validates"))
    });
    group.bench_function("plan + canonical JSON + sha256", |b| {
        b.iter(|| config.to_plan().content_hash().expect("hashes"))
    });
    group.finish();
}

/// Times the phases of the same `runs` checks back to back and prints the median of each,
/// so the split comes from one set of runs (criterion's per-phase groups run minutes apart
/// on a noisy machine).
fn print_split(label: &str, path: &Path, runs: usize) {
    let mut samples: Vec<[f64; 4]> = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let json = load::evaluate(path).expect("evaluates");
        let t1 = Instant::now();
        let config = SystemConfig::from_json(&json).expect("deserialises");
        let t2 = Instant::now();
        validate::validate(&config).expect("validates");
        let t3 = Instant::now();
        config.to_plan().content_hash().expect("hashes");
        let t4 = Instant::now();
        samples.push([
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t4 - t3).as_secs_f64(),
        ]);
    }
    let median = |k: usize| {
        let mut v: Vec<f64> = samples.iter().map(|s| s[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let phases = [median(0), median(1), median(2), median(3)];
    let total: f64 = phases.iter().sum();
    eprintln!(
        "split {label} (median of {runs}): nickel {:.1} ms ({:.1}%), deserialise {:.2} ms ({:.1}%), \
         graph validation {:.2} ms ({:.1}%), plan+json+sha256 {:.2} ms ({:.1}%), sum {:.1} ms",
        phases[0] * 1e3,
        100.0 * phases[0] / total,
        phases[1] * 1e3,
        100.0 * phases[1] / total,
        phases[2] * 1e3,
        100.0 * phases[2] / total,
        phases[3] * 1e3,
        100.0 * phases[3] / total,
        total * 1e3
    );
}

fn bench_check(c: &mut Criterion) {
    let gateway = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.ncl");
    phases(c, "gateway", &gateway, 20, 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = generated_config(dir.path());
    // Keep a copy for timing the real CLI process (e.g. with hyperfine), when asked to.
    if let Some(out) = std::env::var_os("TESTUDO_BENCH_KEEP_CONFIG") {
        std::fs::copy(&generated, out).expect("copy the generated config");
    }
    phases(c, "generated-1000c-5000r", &generated, 10, 30);
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
