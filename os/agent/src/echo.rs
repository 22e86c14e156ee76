//! The plumbing proof: report device information once, then echo every desired change into the
//! reported properties (`echo` mirrors the desired document, `echoVersion` its `$version`).
//! The reconciliation that acts on desired state lives elsewhere; this only shows the twin
//! round trip works end to end.

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::agent::{error_chain, AgentEvent, AgentHandle};
use crate::twin::ChangeKind;

/// What the example reports about the device at start.
pub fn device_info() -> Value {
    json!({
        "deviceInfo": {
            "agent": "testudo-agent",
            "agentVersion": env!("CARGO_PKG_VERSION"),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        }
    })
}

/// The reported patches that echo one desired change.
pub fn echo_patches(
    kind: ChangeKind,
    version: u64,
    patch: &serde_json::Map<String, Value>,
    desired: &serde_json::Map<String, Value>,
) -> Vec<Value> {
    match kind {
        // A full document replaces the echo: clear it, then write it whole.
        ChangeKind::Full => vec![
            json!({ "echo": null }),
            json!({ "echo": desired, "echoVersion": version }),
        ],
        // A patch is echoed as a patch (its nulls delete the same keys in the echo).
        ChangeKind::Patch => vec![json!({ "echo": patch, "echoVersion": version })],
    }
}

/// Runs the example until the event stream ends, describing each event with `log`.
pub async fn run(
    handle: AgentHandle,
    mut events: mpsc::UnboundedReceiver<AgentEvent>,
    log: impl Fn(String),
) {
    let reporter = handle.clone();
    let info = tokio::spawn(async move { reporter.report(&device_info()).await });
    let mut info = Some(info);
    while let Some(event) = events.recv().await {
        match event {
            AgentEvent::Desired(change) => {
                log(format!(
                    "desired $version {} ({:?})",
                    change.version, change.kind
                ));
                for patch in
                    echo_patches(change.kind, change.version, &change.patch, &change.desired)
                {
                    // Reports are acknowledged in order; waiting here keeps echoes ordered.
                    if let Err(err) = handle.report(&patch).await {
                        log(format!(
                            "echo of $version {} failed: {}",
                            change.version,
                            error_chain(&err)
                        ));
                    }
                }
            }
            AgentEvent::Connected { connection } => {
                log(format!("connected (connection {connection})"))
            }
            AgentEvent::Disconnected { reason, .. } => log(format!("disconnected: {reason}")),
            AgentEvent::FullTwin { reported_version } => log(format!(
                "full twin received (reported $version {reported_version})"
            )),
            AgentEvent::RenewingToken => log("renewing SAS token".into()),
            AgentEvent::Throttled { retry_after } => log(format!(
                "throttled; retrying in {} ms",
                retry_after.as_millis()
            )),
            AgentEvent::MethodCall(call) => {
                // The example answers every method by echoing its payload.
                let payload: Value = serde_json::from_slice(&call.payload).unwrap_or(Value::Null);
                log(format!("method {} called", call.name));
                handle.respond_method(&call, 200, &json!({ "method": call.name, "echo": payload }));
            }
            AgentEvent::Error(err) => log(format!("error: {}", error_chain(&err))),
        }
        if let Some(task) = info.take_if(|task| task.is_finished()) {
            match task.await {
                Ok(Ok(version)) => log(format!(
                    "device info reported (reported $version {version:?})"
                )),
                Ok(Err(err)) => log(format!(
                    "reporting device info failed: {}",
                    error_chain(&err)
                )),
                Err(_) => log("reporting device info stopped".into()),
            }
        }
    }
}

/// Runs the agent with the echo example on its own runtime until Ctrl-C (then disconnects
/// cleanly). For command-line front ends.
pub fn run_until_interrupted(
    config: crate::agent::AgentConfig,
    log: impl Fn(String),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (handle, events) = crate::agent::spawn(config);
        tokio::select! {
            _ = run(handle.clone(), events, log) => {}
            _ = tokio::signal::ctrl_c() => handle.shutdown().await,
        }
    });
    Ok(())
}
