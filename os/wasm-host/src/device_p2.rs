//! `testudo:device` for components, generated from `wasm-apps/wit/device.wit`. Every call
//! is checked against the app's grants by [`crate::device::DeviceHost`].

use wasmtime::component::{HasSelf, Linker};

use crate::device::DeviceDenial;
use crate::device_p1::HasDevice;
use crate::run::AppState;

wasmtime::component::bindgen!({
    path: "../../wasm-apps/wit",
    world: "app",
});

use self::testudo::device::{net, sensor, telemetry};

/// Whether a component import names a `testudo:device` interface.
pub fn is_device_import(import: &str) -> bool {
    matches!(
        import,
        "testudo:device/sensor@0.1.0"
            | "testudo:device/telemetry@0.1.0"
            | "testudo:device/net@0.1.0"
    )
}

/// Adds the `testudo:device` interfaces to `linker`.
pub fn add_to_linker<W: Send + 'static>(linker: &mut Linker<AppState<W>>) -> wasmtime::Result<()> {
    sensor::add_to_linker::<AppState<W>, HasSelf<AppState<W>>>(linker, |state| state)?;
    telemetry::add_to_linker::<AppState<W>, HasSelf<AppState<W>>>(linker, |state| state)?;
    net::add_to_linker::<AppState<W>, HasSelf<AppState<W>>>(linker, |state| state)?;
    Ok(())
}

impl<W: Send> sensor::Host for AppState<W> {
    fn read(&mut self, channel: String) -> Result<f64, sensor::SensorError> {
        self.device()
            .read_sensor(&channel)
            .map_err(|denial| match denial {
                DeviceDenial::NotGranted => sensor::SensorError::NotGranted,
                DeviceDenial::TooLarge | DeviceDenial::Unavailable => {
                    sensor::SensorError::Unavailable
                }
            })
    }
}

fn telemetry_error(denial: DeviceDenial) -> telemetry::TelemetryError {
    match denial {
        DeviceDenial::NotGranted => telemetry::TelemetryError::NotGranted,
        DeviceDenial::TooLarge => telemetry::TelemetryError::TooLarge,
        DeviceDenial::Unavailable => telemetry::TelemetryError::Unavailable,
    }
}

impl<W: Send> telemetry::Host for AppState<W> {
    fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), telemetry::TelemetryError> {
        self.device()
            .publish(topic, payload)
            .map_err(telemetry_error)
    }

    fn receive(&mut self) -> Result<Option<telemetry::Message>, telemetry::TelemetryError> {
        self.device()
            .receive()
            .map(|record| {
                record.map(|record| telemetry::Message {
                    topic: record.topic,
                    payload: record.payload,
                })
            })
            .map_err(telemetry_error)
    }
}

impl<W: Send> net::Host for AppState<W> {
    fn send(&mut self, destination: String, data: Vec<u8>) -> Result<(), net::NetError> {
        self.device()
            .net_send(&destination, &data)
            .map_err(|denial| match denial {
                DeviceDenial::NotGranted => net::NetError::NotGranted,
                DeviceDenial::Unavailable => net::NetError::Unreachable,
                DeviceDenial::TooLarge => net::NetError::TooLarge,
            })
    }
}
