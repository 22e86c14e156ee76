# `lib.mkWasmApps { pkgs, src }`: the WebAssembly apps of `wasm-apps/`, compiled from their C
# sources for wasm32-wasi with the flags in `wasm-apps/cflags` (the ones `cargo xtask apps`
# uses), into `$out/wasm-apps/<name>.wasm`: where the example configs name them.
# With nixpkgs, pass a `pkgs` whose `wasiClang` is a clang targeting wasm32-wasi and whose
# `wasiSysroot` is a wasi-libc sysroot (untested: no nixpkgs here).
{ pkgs, src }:
let
  lines = builtins.filter (l: builtins.isString l && l != "")
    (builtins.split "\n" (builtins.readFile (src + "/wasm-apps/cflags")));
in
pkgs.runCommand "testudo-wasm-apps" { nativeBuildInputs = [ pkgs.wasiClang ]; } ''
  mkdir -p $out/wasm-apps
  for source in ${src}/wasm-apps/*.c; do
    name=''${source##*/}
    clang ${toString lines} --sysroot=${pkgs.wasiSysroot} -I ${src}/wasm-apps/include \
      -o $out/wasm-apps/''${name%.c}.wasm "$source"
  done
''
