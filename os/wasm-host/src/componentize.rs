//! Turns a WASI preview 1 core module into a preview 2 component: embeds the `testudo:device`
//! world (from `wasm-apps/wit`) and wraps the module with wasmtime's preview 1 adapter.

use std::path::Path;

use wit_component::{ComponentEncoder, StringEncoding};

use crate::error::HostError;

/// Makes a component of `module` (a p1 command module) for world `world` of the WIT package
/// in `wit_dir`. Only the interfaces the module actually imports end up in the component.
pub fn componentize(
    app: &str,
    module: &[u8],
    wit_dir: &Path,
    world: &str,
) -> Result<Vec<u8>, HostError> {
    let error = |source: Box<dyn std::error::Error + Send + Sync>| HostError::Componentize {
        app: app.to_owned(),
        source,
    };
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(wit_dir)
        .map_err(|source| error(source.into()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .map_err(|source| error(source.into()))?;
    let mut bytes = module.to_vec();
    wit_component::embed_component_metadata(&mut bytes, &resolve, world, StringEncoding::UTF8)
        .map_err(|source| error(source.into()))?;
    ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .and_then(|encoder| {
            encoder.adapter(
                "wasi_snapshot_preview1",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .and_then(|mut encoder| encoder.encode())
        .map_err(|source| error(source.into()))
}
