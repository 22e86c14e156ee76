{
  # A device repository built with testudo and nixpkgs: `nix build .#image`.
  # `keys/` is a directory made by `testudo keys init` (keep its private keys out of git and
  # off shared stores: build release images on a signing host). `system.ncl` is your config;
  # the paths it names (WASM modules, trust anchors) are relative to this directory.
  description = "A testudo device image";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    testudo.url = "git+https://example.invalid/testudo";
  };

  outputs = { self, nixpkgs, testudo }:
    let
      system = "x86_64-linux";
      nixpkgsPkgs = nixpkgs.legacyPackages.${system};
      # What testudo's Nix functions take from `pkgs` beyond nixpkgs' own names, or in another
      # shape: a static busybox for the initramfs, and for the WASM apps a `clang` (with
      # `wasm-ld`) that targets wasm32-wasi and a wasi-libc sysroot. NOT TESTED: no nixpkgs
      # could be fetched where this template was written; check these two against your
      # nixpkgs (decision 0095 lists what is untested).
      pkgs = nixpkgsPkgs // {
        busybox = nixpkgsPkgs.pkgsStatic.busybox;
        wasiClang = nixpkgsPkgs.symlinkJoin {
          name = "wasi-clang";
          paths = [ nixpkgsPkgs.llvmPackages.clang-unwrapped nixpkgsPkgs.llvmPackages.lld ];
        };
        wasiSysroot = "${nixpkgsPkgs.pkgsCross.wasi32.wasilibc}";
      };
      testudoBin = testudo.lib.mkTestudo { inherit pkgs; src = testudo; };
    in
    {
      packages.${system} = {
        testudo = testudoBin;
        image = testudo.lib.mkImage {
          inherit pkgs;
          src = self;
          testudo = testudoBin;
          wasmApps = testudo.lib.mkWasmApps { inherit pkgs; src = testudo; };
          config = "system.ncl";
          name = "device";
          keys = ./keys;
        };
      };
      checks.${system} = testudo.lib.mkChecks { inherit pkgs; testudo = testudoBin; };
    };
}
