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
      # What testudo's Nix functions take from `pkgs`, beyond nixpkgs' own names.
      pkgs = nixpkgsPkgs // {
        busybox = nixpkgsPkgs.pkgsStatic.busybox;
        rustToolchain = nixpkgsPkgs.cargo;
        wasiClang = nixpkgsPkgs.pkgsCross.wasi32.buildPackages.clang;
        wasiSysroot = "${nixpkgsPkgs.pkgsCross.wasi32.wasilibc.dev}";
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
