# `lib.mkTestudo { pkgs }`: testudo built from this source tree, offline, in three steps:
#
# 1. `vendor`: every crates.io package of `Cargo.lock`, each fetched by a fixed-output
#    derivation whose hash is the lock file's own checksum (no second hash to maintain), then
#    unpacked into one directory source for cargo.
# 2. `deps`: the workspace's dependencies compiled against a copy of the workspace in which
#    every `.rs` file is a stub; its output is cargo's target directory. It depends only on the
#    manifests and the lock file, so a change to a `.rs` file does not rebuild it.
# 3. the workspace itself, compiled on top of a copy of `deps`' target directory.
#
# Paths are remapped (`--remap-path-prefix`), so binaries do not name the build directory or
# the store path of the vendored crates beyond what the crates' own panics record.
{ pkgs, src, profile ? "release" }:
let
  # The tree cargo compiles: everything but the Nix files and the docs, so editing those does
  # not rebuild testudo.
  cargoSrc = builtins.path {
    name = "testudo-source";
    path = src;
    filter = path: type:
      let relative = builtins.substring (builtins.stringLength (toString src) + 1) (-1) (toString path);
      in !(builtins.elem relative [ "nix" "flake.nix" "flake.lock" "hydra" "templates" "docs" "target" ".git" ]);
  };
  lock = builtins.fromTOML (builtins.readFile (src + "/Cargo.lock"));
  registry = "registry+https://github.com/rust-lang/crates.io-index";
  crates = builtins.filter (p: (p.source or "") == registry) lock.package;

  fetchCrate = p: derivation {
    name = "crate-${p.name}-${p.version}.tar.gz";
    system = "builtin";
    builder = "builtin:fetchurl";
    url = "https://static.crates.io/crates/${p.name}/${p.name}-${p.version}.crate";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = p.checksum;
    executable = false;
    unpack = false;
    preferLocalBuild = true;
  };

  vendor = pkgs.runCommand "testudo-vendor"
    {
      # One line per crate: `<name>-<version> <checksum> <archive>`.
      crateList = builtins.concatStringsSep ""
        (map (p: "${p.name}-${p.version} ${p.checksum} ${fetchCrate p}\n") crates);
      passAsFile = [ "crateList" ];
    } ''
    mkdir -p $out
    while read -r dir checksum archive; do
      mkdir "$out/$dir"
      tar -xzf "$archive" -C "$out/$dir" --strip-components=1
      printf '{"files":{},"package":"%s"}' "$checksum" > "$out/$dir/.cargo-checksum.json"
    done < "$crateListPath"
  '';

  # The manifests, the lock file and the names (not the contents) of the files cargo takes as
  # targets: all that `deps` depends on. Adding a module or an integration test does not
  # rebuild it; adding a binary, a bench or a build script does.
  manifestsOnly = builtins.path {
    name = "testudo-manifests";
    path = src;
    filter = path: type:
      (type == "directory" && !(skipDir path))
      || builtins.match ".*/Cargo\\.(toml|lock)" path != null;
  };
  targetPattern = "(.*/)?(src/(lib|main)|src/bin/[^/]+|build|benches/[^/]+|fuzz_targets/[^/]+)\\.rs";
  skipDir = path: builtins.elem (baseNameOf path) [ "target" ".git" ];
  rustFiles = dir: prefix: builtins.concatLists (builtins.attrValues (builtins.mapAttrs
    (name: type:
      if type == "directory" && !(skipDir name) then rustFiles (dir + "/${name}") "${prefix}${name}/"
      else if type == "regular" && builtins.match targetPattern "${prefix}${name}" != null then [ "${prefix}${name}" ]
      else [ ])
    (builtins.readDir dir)));

  profileDir = if profile == "release" then "release" else "debug";
  cargoFlags = "--workspace --bins --locked --offline"
    + (if profile == "release" then " --release" else "");

  # Shared by both compile steps (identical flags, or cargo rebuilds everything).
  cargoSetup = ''
    export HOME=$TMPDIR CARGO_HOME=$TMPDIR/cargo-home CARGO_TARGET_DIR=$TMPDIR/target
    export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never CARGO_BUILD_JOBS=''${NIX_BUILD_CORES:-2}
    export RUSTFLAGS="--remap-path-prefix=$TMPDIR/src=. --remap-path-prefix=${vendor}=/vendor"
    mkdir -p $CARGO_HOME
    cat > $CARGO_HOME/config.toml <<CONFIG
    [source.crates-io]
    replace-with = "vendored"
    [source.vendored]
    directory = "${vendor}"
    CONFIG
  '';

  inputs = {
    nativeBuildInputs = [ pkgs.cargo pkgs.rustc pkgs.pkg-config pkgs.stdenv.cc ];
    buildInputs = [ pkgs.openssl pkgs.tpm2-tss ];
  };

  deps = pkgs.runCommand "testudo-deps" (inputs // {
    stubList = builtins.concatStringsSep "" (map (f: "${f}\n") (rustFiles src ""));
    passAsFile = [ "stubList" ];
  }) ''
    ${cargoSetup}
    cp -r ${manifestsOnly} src
    chmod -R u+w src
    # Every source file becomes a stub that compiles as a library, a binary or a build script.
    while read -r file; do
      echo '#![allow(dead_code)] fn main() {}' > "src/$file"
    done < "$stubListPath"
    (cd src && cargo build ${cargoFlags})
    # Keep the dependencies only: the stubs' own outputs must not look up to date.
    rm -rf $CARGO_TARGET_DIR/${profileDir}/.fingerprint/testudo* \
           $CARGO_TARGET_DIR/${profileDir}/.fingerprint/xtask*
    mv $CARGO_TARGET_DIR $out
  '';

  testudo = pkgs.runCommand "testudo-0.1.0" inputs ''
    ${cargoSetup}
    cp -r ${cargoSrc} src
    chmod -R u+w src
    # Timestamps kept (all 1 in the store): a generated file copied after the output that
    # lists it would look newer and make cargo rebuild that dependency.
    cp -r --preserve=timestamps ${deps} $CARGO_TARGET_DIR
    chmod -R u+w $CARGO_TARGET_DIR
    (cd src && cargo build ${cargoFlags})
    mkdir -p $out/bin
    find $CARGO_TARGET_DIR/${profileDir} -maxdepth 1 -type f -perm -u+x \
      -exec cp {} $out/bin/ \;
  '';
in
testudo // { inherit vendor deps; }
