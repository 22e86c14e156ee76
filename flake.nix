{
  # testudo as a Nix flake: the image builder is the Rust `testudo build` (crate
  # testudo-images); Nix only wraps it. This flake has NO inputs so it evaluates offline
  # (`nix flake show`, `nix eval`, `nix flake check` with Debian's nix 2.8).
  #
  # What works without nixpkgs (here):
  #   - packages.<system>.<example>-recipe: a /bin/sh-only derivation that writes the exact
  #     command line, SOURCE_DATE_EPOCH and inputs of an image build (a build plan for CI).
  #   - checks.<system>.flake-evaluates, hydraJobs: the same recipes, per example.
  # What needs nixpkgs (not fetchable here; pass it in):
  #   - lib.mkTestudo { pkgs }: the testudo CLI built with rustPlatform from Cargo.lock.
  #   - lib.mkImage { pkgs, example }: runs `testudo build` in the sandbox with
  #     squashfs-tools, dosfstools, mtools, grub2_efi, e2fsprogs, binutils, busybox and a
  #     kernel from pkgs, producing rootfs.img, disk.img, update.raucb, manifest.json.
  #   - hydra/ holds the Hydra project spec that evaluates hydraJobs.
  description = "testudo: reproducible, declarative full-system images for IoT gateways";

  outputs = { self }:
    let
      systems = [ "x86_64-linux" ];
      forAllSystems = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);

      # Example systems and their Nickel configs (paths relative to the repository root).
      examples = {
        gateway = "system-config/examples/gateway.ncl";
      };

      # Reproducible clock for Nix builds: the flake's last-modified time when known.
      sourceDateEpoch = toString (self.lastModified or 0);

      buildCommand = config: out:
        "testudo build ${config} -o ${out} --keys \"$TESTUDO_KEYS\" --plain";

      # A build recipe needing nothing but /bin/sh: it records what the image build runs.
      recipe = system: name: config:
        derivation {
          name = "testudo-${name}-recipe";
          inherit system;
          builder = "/bin/sh";
          args = [
            "-c"
            ''
              echo 'SOURCE_DATE_EPOCH=${sourceDateEpoch}' > $out
              echo '${buildCommand config "OUT"}' >> $out
              echo 'outputs: rootfs.img disk.img update.raucb manifest.json' >> $out
            ''
          ];
        };
    in
    {
      lib = {
        inherit examples buildCommand;

        # The testudo CLI from this repository (needs nixpkgs).
        mkTestudo = { pkgs }:
          pkgs.rustPlatform.buildRustPackage {
            pname = "testudo";
            version = "0.1.0";
            src = self;
            cargoLock.lockFile = ./Cargo.lock;
            cargoBuildFlags = [ "--workspace" ];
            nativeBuildInputs = [ pkgs.pkg-config pkgs.clang ];
            buildInputs = [ pkgs.openssl pkgs.tpm2-tss ];
            doCheck = false;
          };

        # One example's image (needs nixpkgs). Development keys are generated inside the
        # build; pass real keys through TESTUDO_KEYS in a non-sandboxed signing step.
        mkImage = { pkgs, example ? "gateway" }:
          let testudo = self.lib.mkTestudo { inherit pkgs; };
          in pkgs.runCommand "testudo-${example}-image"
            {
              nativeBuildInputs = [
                testudo
                pkgs.squashfsTools
                pkgs.dosfstools
                pkgs.mtools
                pkgs.grub2_efi
                pkgs.e2fsprogs
                pkgs.binutils
                pkgs.busybox
              ];
              SOURCE_DATE_EPOCH = sourceDateEpoch;
            } ''
            export HOME=$TMPDIR TESTUDO_KEYS=$TMPDIR/keys
            testudo keys init "$TESTUDO_KEYS"
            cd ${self}
            ${buildCommand examples.${example} "$out"} --bin-dir ${testudo}/bin --cache $TMPDIR/cache
          '';
      };

      packages = forAllSystems (system:
        builtins.mapAttrs (name: config: recipe system name config) examples
        // { default = recipe system "gateway" examples.gateway; });

      checks = forAllSystems (system: {
        flake-evaluates = derivation {
          name = "testudo-flake-evaluates";
          inherit system;
          builder = "/bin/sh";
          args = [ "-c" "echo ok > $out" ];
        };
      });

      # What Hydra builds (see hydra/): one recipe per example and system. With nixpkgs
      # wired in (hydra/README.md), the images themselves.
      hydraJobs = {
        recipes = self.packages;
      };
    };
}
