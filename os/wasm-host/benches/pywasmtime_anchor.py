"""Anchor for the wasm-host benchmark: the PyPI `wasmtime` package running the same module.

Usage: python3 pywasmtime_anchor.py HELLO.wasm HOSTCALL.wat ITERATIONS
Prints one JSON object: instantiate_us (from a serialized module, WASI configured),
host_call_ns (wasm -> Python host function round trip), wasmtime_version.
"""
import json
import sys
import tempfile
import time

import wasmtime


def main():
    hello_path, hostcall_path, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, hello_path)
    with tempfile.NamedTemporaryFile(suffix=".cwasm") as cwasm:
        cwasm.write(module.serialize())
        cwasm.flush()
        module = wasmtime.Module.deserialize_file(engine, cwasm.name)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()

    def instantiate():
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        linker.instantiate(store, module)

    for _ in range(100):
        instantiate()
    start = time.perf_counter()
    for _ in range(iterations):
        instantiate()
    instantiate_us = (time.perf_counter() - start) / iterations * 1e6

    with open(hostcall_path) as source:
        hostcall = wasmtime.Module(engine, source.read())
    store = wasmtime.Store(engine)
    host_linker = wasmtime.Linker(engine)
    memory_holder = {}

    def read(ptr, length, ret):
        # Same work as the Rust host's sensor.read minus the grant check: write the result.
        memory_holder["m"].write(store, b"\0" * 16, ret)

    host_linker.define_func(
        "testudo:device/sensor@0.1.0",
        "read",
        wasmtime.FuncType([wasmtime.ValType.i32()] * 3, []),
        read,
    )
    instance = host_linker.instantiate(store, hostcall)
    memory_holder["m"] = instance.exports(store)["memory"]
    run = instance.exports(store)["run"]
    calls = iterations * 10
    run(store, 1000)
    start = time.perf_counter()
    run(store, calls)
    host_call_ns = (time.perf_counter() - start) / calls * 1e9
    print(json.dumps({
        "instantiate_us": instantiate_us,
        "host_call_ns": host_call_ns,
        "wasmtime_version": getattr(wasmtime, "__version__", None) or _version(),
    }))


def _version():
    from importlib.metadata import version
    return version("wasmtime")


if __name__ == "__main__":
    main()
