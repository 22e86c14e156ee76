//! Promise: the agent downloads a deployment's WASM module from a real HTTPS server (a private
//! nginx with a test CA, reached through a `Dialer` as through the `net` route) into a sink:
//! exactly the module's bytes, each once, in pieces no larger than its one buffer; a transfer
//! cut by the server's death resumes with `Range` on the restarted server (or, when the server
//! ignores ranges, skips what the sink already has); and every way the server can serve
//! something else — gone for good, a shorter file, other content, 404, a certificate for
//! another name, a URL that is not https — ends in an error naming what went wrong, never in a
//! module the deployment did not name.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use testudo_agent::dial::Dialer;
use testudo_agent::module_fetch::{
    fetch_range, Interruption, RangeRequest, BUFFER_SIZE, MAX_ATTEMPTS,
};
use testudo_agent::{fetch_module, AgentError, ModuleRequest, TlsSettings};
use testudo_testkit::nginx::{self, Nginx, Options};

/// The name the server's certificate is for; the dialer connects to 127.0.0.1 whatever the
/// name.
const HOST: &str = "artifacts.testudo.test";

/// Dials 127.0.0.1 on the port asked for, and records the host names asked for.
#[derive(Debug, Default)]
struct LocalDialer {
    hosts: Mutex<Vec<String>>,
}

impl LocalDialer {
    fn dials(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }
}

impl Dialer for LocalDialer {
    fn dial(
        &self,
        host: &str,
        port: u16,
    ) -> Result<std::net::TcpStream, Box<dyn std::error::Error + Send + Sync>> {
        self.hosts.lock().unwrap().push(host.to_owned());
        Ok(std::net::TcpStream::connect(("127.0.0.1", port))?)
    }
}

/// `len` bytes that differ from one run of `seed` to another.
fn content(len: usize, seed: u64) -> Vec<u8> {
    // Xorshift's state must not be 0: every seed gives another odd state.
    let mut state = seed * 2 + 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

struct Fixture {
    nginx: Nginx,
    dialer: Arc<LocalDialer>,
    tls: Arc<rustls::ClientConfig>,
}

impl Fixture {
    fn start(options: &Options) -> Fixture {
        let nginx = nginx::start(HOST, options);
        let tls = TlsSettings {
            ca_pem: nginx.ca_pem().as_bytes().to_vec(),
            client_identity: None,
        }
        .client_config(HOST)
        .unwrap();
        Fixture {
            nginx,
            dialer: Arc::new(LocalDialer::default()),
            tls,
        }
    }

    /// Serves `bytes` as `/name`.
    fn serve(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.nginx.root().join(name), bytes).unwrap();
    }

    fn url(&self, name: &str) -> String {
        format!("https://{HOST}:{}/{name}", self.nginx.port())
    }

    /// Fetches into a vector; the outcome, what the sink got and the last progress report.
    async fn fetch(
        &self,
        url: &str,
        size: u64,
        sha256: &str,
    ) -> (Result<(), AgentError>, Vec<u8>, (u64, u64)) {
        let mut sink = Vec::new();
        let mut last = (0, 0);
        let outcome = fetch_module(
            self.dialer.clone(),
            self.tls.clone(),
            &ModuleRequest { url, size, sha256 },
            &mut sink,
            |received, total| last = (received, total),
        )
        .await
        .map(|digest| assert_eq!(digest.size, size));
        (outcome, sink, last)
    }

    /// Fetches `name` (`module` is what it holds), killing the server once 128 KiB arrived
    /// and starting it again at once.
    async fn fetch_across_a_restart(
        &mut self,
        name: &str,
        module: &[u8],
    ) -> (Result<(), AgentError>, Vec<u8>) {
        let task = self.fetch_until(name, module, 128 * 1024).await;
        self.nginx.kill();
        self.nginx.restart();
        task.await.unwrap()
    }

    /// Starts fetching `name` (`module` is what it holds) in a task; returns once the sink
    /// has at least `received` bytes, with the task.
    async fn fetch_until(
        &self,
        name: &str,
        module: &[u8],
        received: u64,
    ) -> tokio::task::JoinHandle<(Result<(), AgentError>, Vec<u8>)> {
        let progress = Arc::new(AtomicU64::new(0));
        let (dialer, tls) = (self.dialer.clone(), self.tls.clone());
        let (url, size, sha256) = (self.url(name), module.len() as u64, sha256_hex(module));
        let seen = progress.clone();
        let task = tokio::spawn(async move {
            let mut sink = Vec::new();
            let outcome = fetch_module(
                dialer,
                tls,
                &ModuleRequest {
                    url: &url,
                    size,
                    sha256: &sha256,
                },
                &mut sink,
                |received, _| seen.store(received, Ordering::SeqCst),
            )
            .await
            .map(|_| ());
            (outcome, sink)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while progress.load(Ordering::SeqCst) < received {
            assert!(Instant::now() < deadline, "the download does not progress");
            assert!(!task.is_finished(), "the download ended early");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task
    }
}

/// The access log's requests once it has `count` (nginx logs a request once it has
/// finished it, which may be after the client has all it needs): (status, `Range` header or
/// `-`, body bytes sent).
fn requests(nginx: &Nginx, count: usize) -> Vec<(u16, String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while nginx.access_log().lines().count() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    nginx
        .access_log()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (
                fields[1].parse().unwrap(),
                fields[2].trim_matches('"').to_owned(),
                fields[3].parse().unwrap(),
            )
        })
        .collect()
}

/// A slow server (a 1 MiB module takes about 2 s), to be killed mid-transfer.
fn slow(ignore_ranges: bool) -> Options {
    Options {
        limit_rate: Some("512k".into()),
        ignore_ranges,
    }
}

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_module_arrives_exactly_once_through_the_dialer() {
    let fixture = Fixture::start(&Options::default());
    let module = content(MIB + 17, 1);
    fixture.serve("app.wasm", &module);
    let size = module.len() as u64;

    let (outcome, sink, last) = fixture
        .fetch(&fixture.url("app.wasm"), size, &sha256_hex(&module))
        .await;

    outcome.unwrap();
    assert!(sink == module, "the sink holds other bytes");
    assert_eq!(last, (size, size));
    assert_eq!(fixture.dialer.dials(), [HOST]);
    assert_eq!(requests(&fixture.nginx, 1), [(200, "-".into(), size)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_by_the_server_resumes_with_range_after_its_restart() {
    let mut fixture = Fixture::start(&slow(false));
    let module = content(MIB, 2);
    fixture.serve("app.wasm", &module);

    let (outcome, sink) = fixture.fetch_across_a_restart("app.wasm", &module).await;

    outcome.unwrap();
    // Every byte once: nothing the sink had was sent again.
    assert!(sink == module, "the sink holds other bytes");
    // Two connections, or more if the restart outlasted a retry's wait.
    assert!(fixture.dialer.dials().len() >= 2);
    // The cut request is not logged; the resumption is, as a range from where it stopped.
    let logged = requests(&fixture.nginx, 1);
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (status, range, sent) = &logged[0];
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|range| range.strip_suffix('-'))
        .and_then(|from| from.parse().ok())
        .unwrap_or_else(|| panic!("no open range in {range:?}"));
    assert_eq!(*status, 206);
    assert!(from >= 128 * 1024 && from < module.len() as u64, "{from}");
    assert_eq!(from + sent, module.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_range_has_the_prefix_skipped() {
    let mut fixture = Fixture::start(&slow(true));
    let module = content(MIB, 3);
    fixture.serve("app.wasm", &module);

    let (outcome, sink) = fixture.fetch_across_a_restart("app.wasm", &module).await;

    outcome.unwrap();
    assert!(sink == module, "the sink holds other bytes");
    let logged = requests(&fixture.nginx, 1);
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (status, range, sent) = &logged[0];
    assert!(range.starts_with("bytes="), "{range}");
    assert_eq!((*status, *sent), (200, module.len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_down_ends_the_download_at_the_received_byte() {
    let mut fixture = Fixture::start(&slow(false));
    let module = content(MIB, 4);
    fixture.serve("app.wasm", &module);

    let task = fixture.fetch_until("app.wasm", &module, 128 * 1024).await;
    fixture.nginx.kill();
    let (outcome, sink) = task.await.unwrap();

    let error = outcome.unwrap_err();
    let message = error.to_string();
    let AgentError::ModuleTransfer {
        received,
        expected,
        attempts,
        source,
        ..
    } = error
    else {
        panic!("{error:?}");
    };
    assert_eq!(received, sink.len() as u64);
    assert!(received >= 128 * 1024 && received < module.len() as u64);
    assert!(sink == module[..sink.len()], "the sink holds other bytes");
    assert_eq!((expected, attempts), (module.len() as u64, MAX_ATTEMPTS));
    assert!(matches!(source, Interruption::Connect(_)), "{source:?}");
    assert!(
        message.contains(&format!("byte {received} of {expected}")),
        "{message}"
    );
    assert_eq!(fixture.dialer.dials().len(), MAX_ATTEMPTS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_file_is_refused_before_any_byte_reaches_the_sink() {
    let fixture = Fixture::start(&Options::default());
    let module = content(64 * 1024, 5);
    fixture.serve("app.wasm", &module[..module.len() - 1000]);
    let size = module.len() as u64;

    let (outcome, sink, _) = fixture
        .fetch(&fixture.url("app.wasm"), size, &sha256_hex(&module))
        .await;

    let error = outcome.unwrap_err();
    assert!(
        matches!(error, AgentError::ModuleSize { expected, served, .. } if expected == size && served == size - 1000),
        "{error:?}"
    );
    assert!(sink.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_content_of_the_same_size_fails_the_hash() {
    let fixture = Fixture::start(&Options::default());
    let module = content(200 * 1024, 6);
    let other = content(module.len(), 7);
    fixture.serve("app.wasm", &other);

    let (outcome, _, _) = fixture
        .fetch(
            &fixture.url("app.wasm"),
            module.len() as u64,
            &sha256_hex(&module),
        )
        .await;

    let error = outcome.unwrap_err();
    assert!(
        matches!(&error, AgentError::ModuleHash { expected, found, .. } if *expected == sha256_hex(&module) && *found == sha256_hex(&other)),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_module_is_an_error_naming_the_status_without_retries() {
    let fixture = Fixture::start(&Options::default());

    let (outcome, sink, _) = fixture
        .fetch(&fixture.url("missing.wasm"), 10, &"0".repeat(64))
        .await;

    let error = outcome.unwrap_err();
    assert!(
        matches!(
            error,
            AgentError::ModuleStatus {
                status: 404,
                offset: 0,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("404"), "{error}");
    assert!(sink.is_empty());
    assert_eq!(requests(&fixture.nginx, 1).len(), 1);
    assert_eq!(fixture.dialer.dials(), [HOST]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_without_retries() {
    let fixture = Fixture::start(&Options::default());
    fixture.serve("app.wasm", b"module");
    let url = format!(
        "https://other.testudo.test:{}/app.wasm",
        fixture.nginx.port()
    );

    let (outcome, sink, _) = fixture.fetch(&url, 6, &sha256_hex(b"module")).await;

    let error = outcome.unwrap_err();
    assert!(
        matches!(&error, AgentError::TlsHandshake { host, .. } if host == "other.testudo.test"),
        "{error:?}"
    );
    assert!(sink.is_empty());
    assert_eq!(fixture.dialer.dials(), ["other.testudo.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_other_than_https_are_refused_before_dialing() {
    let dialer = Arc::new(LocalDialer::default());
    // No trust anchors are needed to refuse; an empty root store still makes a configuration.
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    );
    for (url, sha256) in [
        (format!("http://{HOST}/app.wasm"), "0".repeat(64)),
        (format!("https://{HOST}/app.wasm"), "0".repeat(63)),
    ] {
        let mut sink = Vec::new();
        let outcome = fetch_module(
            dialer.clone(),
            tls.clone(),
            &ModuleRequest {
                url: &url,
                size: 1,
                sha256: &sha256,
            },
            &mut sink,
            |_, _| {},
        )
        .await;
        assert!(
            matches!(&outcome, Err(AgentError::ModuleRequest { url: refused, .. }) if *refused == url),
            "{outcome:?}"
        );
    }
    assert!(dialer.dials().is_empty());
}

/// Counts what it is given and remembers the largest write.
#[derive(Debug, Default)]
struct Discard {
    total: u64,
    largest: usize,
}

impl Write for Discard {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.total += bytes.len() as u64;
        self.largest = self.largest.max(bytes.len());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_module_streams_through_in_buffer_sized_pieces() {
    let fixture = Fixture::start(&Options::default());
    // 64 MiB: 64 different 1 MiB blocks.
    let block = content(MIB, 8);
    let mut file = std::fs::File::create(fixture.nginx.root().join("big.wasm")).unwrap();
    let mut hasher = Sha256::new();
    for index in 0..64u8 {
        let mut piece = block.clone();
        piece[0] = index;
        file.write_all(&piece).unwrap();
        hasher.update(&piece);
    }
    drop(file);
    let size = 64 * MIB as u64;
    let sha256 = hex::encode(hasher.finalize());

    let mut sink = Discard::default();
    let digest = fetch_module(
        fixture.dialer.clone(),
        fixture.tls.clone(),
        &ModuleRequest {
            url: &fixture.url("big.wasm"),
            size,
            sha256: &sha256,
        },
        &mut sink,
        |_, _| {},
    )
    .await
    .unwrap();

    assert_eq!((digest.size, hex::encode(digest.sha256)), (size, sha256));
    assert_eq!(sink.total, size);
    assert!(
        sink.largest <= BUFFER_SIZE,
        "a write of {} bytes",
        sink.largest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_is_fetched_from_its_offset_without_a_digest_and_resumes() {
    let mut fixture = Fixture::start(&slow(false));
    let file = content(MIB, 9);
    fixture.serve("update.raucb", &file);
    let url = fixture.url("update.raucb");
    let offset = 300_000u64;
    let size = file.len() as u64;

    // The server dies once 128 KiB past the offset arrived and comes back at once.
    let progress = Arc::new(AtomicU64::new(0));
    let seen = progress.clone();
    let (dialer, tls, task_url) = (fixture.dialer.clone(), fixture.tls.clone(), url.clone());
    let task = tokio::spawn(async move {
        let mut sink = Vec::new();
        let request = RangeRequest {
            url: &task_url,
            size,
            offset,
        };
        let outcome = fetch_range(dialer, tls, &request, &mut sink, |received, total| {
            assert_eq!(total, size);
            seen.store(received, Ordering::SeqCst);
        })
        .await;
        (outcome, sink)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress.load(Ordering::SeqCst) < offset + 128 * 1024 {
        assert!(Instant::now() < deadline, "the download does not progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fixture.nginx.kill();
    fixture.nginx.restart();
    let (outcome, sink) = task.await.unwrap();

    outcome.unwrap();
    assert!(
        sink == file[offset as usize..],
        "the sink holds other bytes"
    );
    assert_eq!(progress.load(Ordering::SeqCst), size);
    let logged = requests(&fixture.nginx, 1);
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (status, range, sent) = &logged[0];
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|range| range.strip_suffix('-'))
        .and_then(|from| from.parse().ok())
        .unwrap_or_else(|| panic!("no open range in {range:?}"));
    assert_eq!(*status, 206);
    assert!(from >= offset + 128 * 1024, "{from}");
    assert_eq!(from + sent, size);

    // At the end already: nothing is fetched; beyond it: refused before dialing.
    let dials = fixture.dialer.dials().len();
    for (offset, refused) in [(size, false), (size + 1, true)] {
        let mut sink = Vec::new();
        let request = RangeRequest {
            url: &url,
            size,
            offset,
        };
        let outcome = fetch_range(
            fixture.dialer.clone(),
            fixture.tls.clone(),
            &request,
            &mut sink,
            |_, _| {},
        )
        .await;
        assert_eq!(
            matches!(outcome, Err(AgentError::ModuleRequest { .. })),
            refused,
            "{outcome:?}"
        );
        assert!(sink.is_empty());
    }
    assert_eq!(fixture.dialer.dials().len(), dials);
}
