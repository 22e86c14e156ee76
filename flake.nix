{
  # testudo as a Nix flake. It has no inputs, so `nix flake show` and `nix flake check`
  # evaluate offline anywhere. The image builder is the Rust `testudo build`; Nix builds
  # testudo from this source tree, compiles the WASM apps, runs `testudo build` in the sandbox
  # and boots the result in QEMU.
  #
  # Every Nix function takes `pkgs`: nixpkgs on a machine that has it (see
  # `templates.default`), or `lib.hostPkgs`, a nixpkgs-shaped set of the build host's Debian
  # packages. This flake's own packages and checks use `lib.hostPkgs`, so they build on a
  # Debian machine with no nixpkgs; their builds need the host's tools mapped into the sandbox
  # (`lib.hostPkgs.hostPkgsMeta.sandboxPaths`), which `cargo xtask nix` does. See
  # docs/decisions/0095-nix-host-packages.md.
  description = "testudo: reproducible, declarative full-system images for IoT gateways";

  outputs = { self }:
    let
      system = "x86_64-linux";
      hostPkgs = import ./nix/host-pkgs.nix { inherit system; };

      # Example systems and their Nickel configs (paths relative to the repository root).
      examples = {
        gateway = "system-config/examples/gateway.ncl";
        gateway-dev = "system-config/examples/gateway-dev.ncl";
      };

      # The build clock: the last commit's time for a git checkout, else the newest file's.
      flakeEpoch = toString (self.lastModified or 0);

      lib = rec {
        inherit examples hostPkgs;

        # testudo from source (`nix/testudo.nix`): vendored crates, dependencies, workspace.
        mkTestudo = { pkgs, src ? self, profile ? "release" }:
          import ./nix/testudo.nix { inherit pkgs src profile; };

        # The WASM apps, compiled from C (`nix/wasm-apps.nix`).
        mkWasmApps = { pkgs, src ? self }:
          import ./nix/wasm-apps.nix { inherit pkgs src; };

        # A fresh set of DEVELOPMENT keys (`testudo keys init`): for checks and trials only.
        # The store path's name says so, and so does every image built with them.
        developmentKeys = { pkgs, testudo ? mkTestudo { inherit pkgs; } }:
          pkgs.runCommand "testudo-DEVELOPMENT-keys" { nativeBuildInputs = [ testudo ]; } ''
            HOME=$TMPDIR testudo keys init $out
          '';

        # One system's image (`nix/image.nix`). `keys`: a directory made by `testudo keys
        # init` (copied into the world-readable store: use a signing host's own store for
        # release keys), or `developmentKeys { ... }`.
        mkImage =
          { pkgs
          , keys
          , example ? "gateway"
          , config ? examples.${example}
          , name ? example
          , src ? self
          , testudo ? mkTestudo { inherit pkgs src; }
          , wasmApps ? mkWasmApps { inherit pkgs src; }
          , kernel ? pkgs.linuxPackages.kernel
          , sourceDateEpoch ? flakeEpoch
          }:
          import ./nix/image.nix {
            inherit pkgs src testudo wasmApps keys config name kernel sourceDateEpoch;
          };

        # The checks of `nix flake check` for a given testudo build (`nix/checks.nix`): the
        # examples' config checks, the reproducibility check, the VM boot and rollback checks.
        mkChecks =
          { pkgs
          , testudo ? mkTestudo { inherit pkgs; }
          , keys ? developmentKeys { inherit pkgs testudo; }
          , imageName ? "gateway-checked"
          }:
          import ./nix/checks.nix {
            inherit pkgs testudo keys examples mkImage imageName;
            src = self;
          };
      };

      testudo = lib.mkTestudo { pkgs = hostPkgs; };
      devKeys = lib.developmentKeys { pkgs = hostPkgs; inherit testudo; };
      # Keys the user names: `TESTUDO_KEYS=DIR nix build --impure .#gateway-image`.
      namedKeys = builtins.getEnv "TESTUDO_KEYS";
      imageWithNamedKeys = example:
        if namedKeys != "" then
          lib.mkImage { pkgs = hostPkgs; inherit example testudo; keys = builtins.path { path = namedKeys; name = "testudo-keys"; }; }
        else
          hostPkgs.runCommand "testudo-${example}-image-needs-keys" { } ''
            echo "name the signing keys: TESTUDO_KEYS=DIR nix build --impure .#${example}-image" >&2
            echo "(DIR made by 'testudo keys init'), or build .#${example}-image-development-keys" >&2
            exit 1
          '';
      imageWithDevKeys = example:
        lib.mkImage { pkgs = hostPkgs; inherit example testudo; keys = devKeys; name = "${example}-DEVELOPMENT-keys"; };
    in
    {
      inherit lib;

      packages.${system} = {
        inherit testudo;
        default = testudo;
        wasm-apps = lib.mkWasmApps { pkgs = hostPkgs; };
        development-keys = devKeys;
        gateway-image = imageWithNamedKeys "gateway";
        gateway-dev-image = imageWithNamedKeys "gateway-dev";
        gateway-image-development-keys = imageWithDevKeys "gateway";
        gateway-dev-image-development-keys = imageWithDevKeys "gateway-dev";
      };

      checks.${system} = lib.mkChecks {
        pkgs = hostPkgs;
        inherit testudo;
        keys = devKeys;
        imageName = "gateway-DEVELOPMENT-keys";
      };

      # What Hydra builds (jobset: hydra/spec.json): testudo, both images with development
      # keys (Hydra holds no signing keys), and every check.
      hydraJobs = {
        testudo.${system} = testudo;
        gateway-image.${system} = imageWithDevKeys "gateway";
        gateway-dev-image.${system} = imageWithDevKeys "gateway-dev";
        checks.${system} = self.checks.${system};
      };

      templates.default = {
        path = ./templates/default;
        description = "A device repository whose images testudo builds with nixpkgs";
      };
    };
}
