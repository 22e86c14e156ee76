//! WASI filesystem calls the host answers `unsupported` itself, before any syscall: making
//! hard links, making and reading symbolic links, setting file times. An app's storage is a
//! place for its files; links are a way out of a directory and times a way to confuse
//! whoever reads the files later, and no example app needs either. Refusing them here is
//! what lets the `wasm_host` seccomp role leave out `linkat`, `symlinkat`, `readlinkat` and
//! `utimensat` (decision 0088).
//!
//! Both ABIs are covered: the preview 1 imports a core module links
//! ([`shadow_p1`], errno `notsup`) and the `wasi:filesystem/types` methods a component links
//! ([`shadow_p2`], `error-code.unsupported`); each definition replaces wasmtime-wasi's.

use wasmtime::component::Resource;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, ErrorCode, NewTimestamp, PathFlags,
};

/// WASI preview 1's `errno::notsup`.
pub const ERRNO_NOTSUP: i32 = 58;

/// The preview 1 module name.
const P1: &str = "wasi_snapshot_preview1";

/// The `wasi:filesystem/types` instance wasmtime-wasi defines (semver-compatible names
/// resolve to it).
const P2_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// The preview 1 imports answered `notsup`.
pub const REFUSED_P1: [&str; 5] = [
    "path_link",
    "path_symlink",
    "path_readlink",
    "path_filestat_set_times",
    "fd_filestat_set_times",
];

/// Replaces the preview 1 link, symlink, readlink and set-times imports in `linker` (after
/// `wasmtime_wasi::p1::add_to_linker_sync`).
pub fn shadow_p1<T: 'static>(linker: &mut wasmtime::Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        P1,
        "path_link",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_NOTSUP,
    )?;
    linker.func_wrap(
        P1,
        "path_symlink",
        |_: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_NOTSUP,
    )?;
    linker.func_wrap(
        P1,
        "path_readlink",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_NOTSUP,
    )?;
    linker.func_wrap(
        P1,
        "path_filestat_set_times",
        |_: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| ERRNO_NOTSUP,
    )?;
    linker.func_wrap(
        P1,
        "fd_filestat_set_times",
        |_: i32, _: i64, _: i64, _: i32| ERRNO_NOTSUP,
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

type Refused<R> = wasmtime::Result<(Result<R, ErrorCode>,)>;

/// Replaces the `wasi:filesystem/types` methods `link-at`, `symlink-at`, `readlink-at`,
/// `set-times` and `set-times-at` in `linker` (after `wasmtime_wasi::p2::add_to_linker_sync`).
pub fn shadow_p2<T: 'static>(linker: &mut wasmtime::component::Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(P2_TYPES)?;
    types.func_wrap(
        "[method]descriptor.link-at",
        |_,
         _: (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )|
         -> Refused<()> { Ok((Err(ErrorCode::Unsupported),)) },
    )?;
    types.func_wrap(
        "[method]descriptor.symlink-at",
        |_, _: (Resource<Descriptor>, String, String)| -> Refused<()> {
            Ok((Err(ErrorCode::Unsupported),))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.readlink-at",
        |_, _: (Resource<Descriptor>, String)| -> Refused<String> {
            Ok((Err(ErrorCode::Unsupported),))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.set-times",
        |_, _: (Resource<Descriptor>, NewTimestamp, NewTimestamp)| -> Refused<()> {
            Ok((Err(ErrorCode::Unsupported),))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.set-times-at",
        |_,
         _: (
            Resource<Descriptor>,
            PathFlags,
            String,
            NewTimestamp,
            NewTimestamp,
        )|
         -> Refused<()> { Ok((Err(ErrorCode::Unsupported),)) },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
