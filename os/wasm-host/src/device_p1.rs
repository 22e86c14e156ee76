//! `testudo:device` for core modules: the same functions a component imports, lowered by
//! hand with the canonical ABI (so one C source serves both forms). Every call is checked
//! against the app's grants (a call without a route answers `not-granted` and is reported);
//! imports outside `testudo:device` and WASI fail to link.
//!
//! Return areas (`ret` pointer), as the canonical ABI lays them out:
//! - `sensor.read`:        `u8` tag at 0; `f64` value or `u8` error at 8 (16 bytes).
//! - `telemetry.publish`, `net.send`: `u8` tag at 0, `u8` error at 1.
//! - `telemetry.receive`:  `u8` tag at 0; `u8` error, or `u8` option tag at 4 then
//!   topic `(ptr, len)` at 8 and payload `(ptr, len)` at 16, as `u32`s.

use wasmtime::{Caller, Extern, Linker, Memory};

use crate::device::{
    DeviceDenial, DeviceHost, MAX_NET_SEND_BYTES, MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES,
};

/// Core module name of the sensor interface.
pub const SENSOR_MODULE: &str = "testudo:device/sensor@0.1.0";
/// Core module name of the telemetry interface.
pub const TELEMETRY_MODULE: &str = "testudo:device/telemetry@0.1.0";
/// Core module name of the net interface.
pub const NET_MODULE: &str = "testudo:device/net@0.1.0";
/// Longest `net.send` destination accepted, in bytes.
const MAX_DESTINATION_BYTES: u32 = 512;

/// Store data that carries the app's device interfaces.
pub trait HasDevice {
    /// The app's device interfaces.
    fn device(&self) -> &DeviceHost;
}

/// Whether `module#name` is a `testudo:device` function (linkable; calls are checked).
pub fn is_device_import(module: &str, name: &str) -> bool {
    match module {
        SENSOR_MODULE => name == "read",
        TELEMETRY_MODULE => matches!(name, "publish" | "receive"),
        NET_MODULE => name == "send",
        _ => false,
    }
}

/// Defines the `testudo:device` functions in `linker`.
pub fn add_to_linker<T: HasDevice + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    {
        linker.func_wrap(
            SENSOR_MODULE,
            "read",
            |mut caller: Caller<'_, T>, ptr: u32, len: u32, ret: u32| -> wasmtime::Result<()> {
                let memory = memory(&mut caller)?;
                let mut area = [0u8; 16];
                let result = if len > MAX_TOPIC_BYTES as u32 {
                    Err(DeviceDenial::Unavailable)
                } else {
                    let channel = read_string(&memory, &caller, ptr, len)?;
                    caller.data().device().read_sensor(&channel)
                };
                match result {
                    Ok(value) => area[8..].copy_from_slice(&value.to_le_bytes()),
                    Err(denial) => {
                        area[0] = 1;
                        area[8] = match denial {
                            DeviceDenial::NotGranted => 0,
                            DeviceDenial::TooLarge | DeviceDenial::Unavailable => 1,
                        };
                    }
                }
                memory.write(&mut caller, ret as usize, &area)?;
                Ok(())
            },
        )?;
    }
    {
        linker.func_wrap(
            TELEMETRY_MODULE,
            "publish",
            |mut caller: Caller<'_, T>,
             topic_ptr: u32,
             topic_len: u32,
             payload_ptr: u32,
             payload_len: u32,
             ret: u32|
             -> wasmtime::Result<()> {
                let memory = memory(&mut caller)?;
                let result = if topic_len as usize > MAX_TOPIC_BYTES
                    || payload_len as usize > MAX_PAYLOAD_BYTES
                {
                    Err(DeviceDenial::TooLarge)
                } else {
                    let topic = read_string(&memory, &caller, topic_ptr, topic_len)?;
                    let payload = read_bytes(&memory, &caller, payload_ptr, payload_len)?;
                    caller.data().device().publish(topic, payload)
                };
                let area = status_area(result, telemetry_error_code);
                memory.write(&mut caller, ret as usize, &area)?;
                Ok(())
            },
        )?;
        linker.func_wrap(
            TELEMETRY_MODULE,
            "receive",
            |mut caller: Caller<'_, T>, ret: u32| -> wasmtime::Result<()> {
                let memory = memory(&mut caller)?;
                let mut area = [0u8; 24];
                match caller.data().device().receive() {
                    Ok(None) => {}
                    Ok(Some(record)) => {
                        let topic = give(&mut caller, &memory, record.topic.as_bytes())?;
                        let payload = give(&mut caller, &memory, &record.payload)?;
                        area[4] = 1;
                        area[8..12].copy_from_slice(&topic.0.to_le_bytes());
                        area[12..16].copy_from_slice(&topic.1.to_le_bytes());
                        area[16..20].copy_from_slice(&payload.0.to_le_bytes());
                        area[20..24].copy_from_slice(&payload.1.to_le_bytes());
                    }
                    Err(denial) => {
                        area[0] = 1;
                        area[4] = telemetry_error_code(denial);
                    }
                }
                memory.write(&mut caller, ret as usize, &area)?;
                Ok(())
            },
        )?;
    }
    {
        linker.func_wrap(
            NET_MODULE,
            "send",
            |mut caller: Caller<'_, T>,
             destination_ptr: u32,
             destination_len: u32,
             data_ptr: u32,
             data_len: u32,
             ret: u32|
             -> wasmtime::Result<()> {
                let memory = memory(&mut caller)?;
                let result = if data_len as usize > MAX_NET_SEND_BYTES {
                    Err(DeviceDenial::TooLarge)
                } else if destination_len > MAX_DESTINATION_BYTES {
                    Err(DeviceDenial::NotGranted)
                } else {
                    let destination =
                        read_string(&memory, &caller, destination_ptr, destination_len)?;
                    let data = read_bytes(&memory, &caller, data_ptr, data_len)?;
                    caller.data().device().net_send(&destination, &data)
                };
                let area = status_area(result, net_error_code);
                memory.write(&mut caller, ret as usize, &area)?;
                Ok(())
            },
        )?;
    }
    Ok(())
}

fn telemetry_error_code(denial: DeviceDenial) -> u8 {
    match denial {
        DeviceDenial::NotGranted => 0,
        DeviceDenial::TooLarge => 1,
        DeviceDenial::Unavailable => 2,
    }
}

fn net_error_code(denial: DeviceDenial) -> u8 {
    match denial {
        DeviceDenial::NotGranted => 0,
        DeviceDenial::Unavailable => 1,
        DeviceDenial::TooLarge => 2,
    }
}

fn status_area(result: Result<(), DeviceDenial>, code: fn(DeviceDenial) -> u8) -> [u8; 2] {
    match result {
        Ok(()) => [0, 0],
        Err(denial) => [1, code(denial)],
    }
}

fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::format_err!("app exports no memory")),
    }
}

fn read_bytes<T>(
    memory: &Memory,
    caller: &Caller<'_, T>,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<Vec<u8>> {
    let mut bytes = vec![0; len as usize];
    memory.read(caller, ptr as usize, &mut bytes)?;
    Ok(bytes)
}

fn read_string<T>(
    memory: &Memory,
    caller: &Caller<'_, T>,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<String> {
    String::from_utf8(read_bytes(memory, caller, ptr, len)?)
        .map_err(|_| wasmtime::format_err!("string argument is not UTF-8"))
}

/// Copies `bytes` into memory the app allocates with its `cabi_realloc`.
fn give<T>(
    caller: &mut Caller<'_, T>,
    memory: &Memory,
    bytes: &[u8],
) -> wasmtime::Result<(u32, u32)> {
    let realloc = caller
        .get_export("cabi_realloc")
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmtime::format_err!("app exports no cabi_realloc"))?
        .typed::<(u32, u32, u32, u32), u32>(&*caller)?;
    let len = u32::try_from(bytes.len())?;
    let ptr = realloc.call(&mut *caller, (0, 0, 1, len))?;
    memory.write(&mut *caller, ptr as usize, bytes)?;
    Ok((ptr, len))
}
