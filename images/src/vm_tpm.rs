//! A VM's TPM opened on the host, between boots: the swtpm state `testudo vm run --state DIR`
//! keeps in `DIR/tpm`, served over TCP on 127.0.0.1 for as long as the [`HostTpm`] lives
//! (the TCTI string tss-esapi's swtpm TCTI dials). This is how a factory reads the
//! endorsement key it enrolls with DPS before the device first boots; the state is created
//! when it does not exist yet, exactly as the first boot would create it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{ImageError, Result};

/// How long swtpm may take to listen.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// A VM's swtpm serving on host ports; stopped when dropped (its state stays in the
/// directory: swtpm writes the TPM's non-volatile state as it changes).
#[derive(Debug)]
pub struct HostTpm {
    child: Child,
    /// TCTI for tss-esapi: `swtpm:host=127.0.0.1,port=N`.
    pub tcti: String,
}

impl Drop for HostTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two free consecutive ports: the swtpm TCTI dials the control channel at port + 1.
fn free_port_pair() -> Option<u16> {
    (0..64).find_map(|_| {
        let first = TcpListener::bind("127.0.0.1:0").ok()?;
        let port = first.local_addr().ok()?.port();
        let next = port.checked_add(1)?;
        TcpListener::bind(("127.0.0.1", next)).ok().map(|_| port)
    })
}

/// The swtpm command line serving the TPM state in `state/tpm` on `port` (and `port + 1`).
pub fn host_swtpm_args(state: &Path, port: u16) -> Vec<String> {
    let mut args = crate::vm::swtpm_state_args(state);
    args.extend([
        "--server".to_owned(),
        format!("type=tcp,port={port},bindaddr=127.0.0.1"),
        "--ctrl".to_owned(),
        format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        "--flags".to_owned(),
        "not-need-init,startup-clear".to_owned(),
    ]);
    args
}

/// Opens the TPM of the VM whose state directory is `state` (creating it if needed).
pub fn open_vm_tpm(state: &Path) -> Result<HostTpm> {
    let tpm_dir = state.join("tpm");
    std::fs::create_dir_all(&tpm_dir).map_err(ImageError::write(&tpm_dir))?;
    let port = free_port_pair().ok_or_else(|| ImageError::ToolStart {
        tool: "swtpm".to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            "no two consecutive free ports on 127.0.0.1",
        ),
    })?;
    let child = Command::new("swtpm")
        .args(host_swtpm_args(state, port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ImageError::ToolMissing {
                tool: "swtpm".to_owned(),
                package: "swtpm",
            },
            _ => ImageError::ToolStart {
                tool: "swtpm".to_owned(),
                source,
            },
        })?;
    let mut tpm = HostTpm {
        child,
        tcti: format!("swtpm:host=127.0.0.1,port={port}"),
    };
    let deadline = Instant::now() + LISTEN_WAIT;
    loop {
        let listening = [port, port + 1]
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
        if listening {
            return Ok(tpm);
        }
        if let Ok(Some(status)) = tpm.child.try_wait() {
            let mut said = String::new();
            if let Some(mut stderr) = tpm.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
            }
            return Err(ImageError::HostTpmExited {
                state: tpm_dir,
                status: status.to_string(),
                said: said.trim().to_owned(),
            });
        }
        if Instant::now() >= deadline {
            return Err(ImageError::HostTpmTimeout {
                state: tpm_dir,
                seconds: LISTEN_WAIT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swtpm_serves_the_vm_state_on_loopback_ports() {
        let args = host_swtpm_args(Path::new("/s"), 4000).join(" ");
        assert!(args.contains("--tpmstate dir=/s/tpm"), "{args}");
        assert!(
            args.contains("--server type=tcp,port=4000,bindaddr=127.0.0.1"),
            "{args}"
        );
        assert!(
            args.contains("--ctrl type=tcp,port=4001,bindaddr=127.0.0.1"),
            "{args}"
        );
    }
}
