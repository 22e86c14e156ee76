//! A private nginx for one test: one process (`master_process off`, `daemon off`) serving a
//! directory over HTTPS on a free port of 127.0.0.1, with a server certificate for a DNS name
//! signed by a throwaway test CA (generated with rcgen; clients trust [`Nginx::ca_pem`]). Its
//! configuration, logs, pid and temporary files live in a temporary directory, so no root is
//! needed. [`Nginx::kill`] kills it (SIGKILL: a fault mid-transfer), [`Nginx::restart`] starts
//! it again on the same port; it is killed when dropped. Static files are served with
//! `Content-Length` and byte ranges (nginx's defaults); [`Options`] slows it down or makes it
//! ignore ranges.

#![allow(clippy::unwrap_used)] // test fixture: a failed set-up step is a failed test

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Where Debian's nginx (package `nginx-light`) installs nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// How the server behaves beyond nginx's defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `limit_rate` (bytes per second per connection, nginx syntax: `256k`), to keep a
    /// transfer going long enough to interrupt it.
    pub limit_rate: Option<String>,
    /// `max_ranges 0`: range requests are answered with the whole file (`200`).
    pub ignore_ranges: bool,
}

/// A running (or killed) nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    ca_pem: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Access log format: one line per request, `URI STATUS "RANGE" BYTES_SENT`.
const LOG_FORMAT: &str = r#"$request_uri $status "$http_range" $body_bytes_sent"#;

/// Starts nginx serving an (empty) directory ([`Nginx::root`]) as `https://SERVER_NAME:PORT/`
/// and returns once it listens; fails naming the package when nginx is missing.
pub fn start(server_name: &str, options: &Options) -> Nginx {
    assert!(
        Path::new(NGINX).is_file(),
        "{NGINX} is needed (Debian package nginx-light; `cargo xtask deps` installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    for sub in ["www", "tmp"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let (ca_pem, server_pem, server_key_pem) = certificates(server_name);
    std::fs::write(dir.path().join("server.pem"), server_pem).unwrap();
    std::fs::write(dir.path().join("server.key.pem"), server_key_pem).unwrap();
    let mut nginx = Nginx {
        child: None,
        dir,
        port: 0,
        ca_pem,
    };
    // A free port can be taken by another test between its probe and nginx's bind: try others.
    for _ in 0..5 {
        nginx.port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        nginx.write_config(server_name, options);
        if nginx.launch() {
            return nginx;
        }
    }
    panic!("nginx did not start: {}", nginx.error_log());
}

impl Nginx {
    /// The HTTPS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory served at `/`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// The test CA's certificate (PEM) the server's certificate chains to.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The access log so far: one line per finished request, `URI STATUS "RANGE"
    /// BYTES_SENT` (`"-"` without a `Range` header). A request cut by [`Nginx::kill`] is
    /// not logged.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Kills nginx with SIGKILL (connections it serves are cut); no-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts nginx again on the same port, with the same files and configuration (killing
    /// it first if it runs); returns once it listens.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "nginx did not restart on port {}: {}",
            self.port,
            self.error_log()
        );
    }

    fn write_config(&self, server_name: &str, options: &Options) {
        let prefix = self.dir.path().display();
        let port = self.port;
        let limit_rate = options
            .limit_rate
            .as_ref()
            .map(|rate| format!("limit_rate {rate};"))
            .unwrap_or_default();
        let max_ranges = if options.ignore_ranges {
            "max_ranges 0;"
        } else {
            ""
        };
        let config = format!(
            r#"daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format ranges '{LOG_FORMAT}';
    access_log {prefix}/access.log ranges;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {server_name};
        ssl_certificate {prefix}/server.pem;
        ssl_certificate_key {prefix}/server.key.pem;
        root {prefix}/www;
        {limit_rate}
        {max_ranges}
    }}
}}
"#
        );
        std::fs::write(self.dir.path().join("nginx.conf"), config).unwrap();
    }

    /// Starts nginx with the written configuration; whether it listens (it exits when the
    /// port is taken).
    fn launch(&mut self) -> bool {
        let prefix = self.dir.path();
        let mut child = Command::new(NGINX)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {NGINX}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

/// A throwaway CA and a server certificate for `server_name` it signs: (CA PEM, server
/// chain PEM, server key PEM).
fn certificates(server_name: &str) -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "testudo test kit nginx CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec![server_name.to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, server_name);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_pem = server.signed_by(&key, &issuer).unwrap().pem();
    (
        ca_pem.clone(),
        format!("{server_pem}{ca_pem}"),
        key.serialize_pem(),
    )
}
