# `lib.hostPkgs`: a small nixpkgs-shaped package set made of the build host's Debian packages,
# so that the flake's Nix code (`lib.mkTestudo`, `lib.mkImage`, the checks) runs on a machine
# without nixpkgs, and runs unchanged with nixpkgs on a machine that has it.
#
# Each package is a derivation whose `bin/` links to what the Debian package of that name
# installed (read from dpkg's file lists at build time; the build fails naming the package if
# it is missing). The packages are honest but not hermetic: a host upgrade changes what they
# link to without changing their hash.
#
# Builds need the host's files inside the sandbox (`sandbox-paths`, see `sandboxPaths`) and the
# Rust toolchain's sysroot mapped at `rustSysroot`. `cargo xtask nix ...` passes both.
{ system }:
let
  bash = "/bin/bash";

  # The directories and files a sandboxed build maps in from the host.
  sandboxPaths = [
    "/bin" "/sbin" "/usr" "/lib" "/lib64" "/etc/alternatives" "/etc/ld.so.cache" "/var/lib/dpkg"
    "/boot" "/vmlinuz"
  ];

  # Where the Rust toolchain (`rustc --print sysroot`) is mapped inside the sandbox.
  rustSysroot = "/opt/testudo-rust";

  # The executables of the Debian packages `debs` (from /bin, /sbin, /usr/bin, /usr/sbin), linked
  # into `$out/bin`; a name ending in `?` may be missing. `extra` runs afterwards (more links).
  debianPackage = name: debs: extra: derivation {
    inherit name system;
    builder = bash;
    args = [
      "-euo" "pipefail" "-c"
      ''
        PATH=/usr/bin:/bin
        mkdir -p $out/bin
        for wanted in ${toString debs}; do
          deb=''${wanted%\?}
          list=/var/lib/dpkg/info/$deb.list
          [ -e "$list" ] || list=/var/lib/dpkg/info/$deb:amd64.list
          if [ ! -e "$list" ] && [ "$deb" != "$wanted" ]; then
            continue
          elif [ ! -e "$list" ]; then
            echo "hostPkgs.${name}: Debian package $deb is not installed (cargo xtask deps installs it)" >&2
            exit 1
          fi
          { grep -E '^(/usr)?/s?bin/[^/]+$' "$list" || true; } | while read -r program; do
            [ -e "$out/bin/''${program##*/}" ] || ln -s "$program" "$out/bin/"
          done
        done
        ${extra}
      ''
    ];
  };

  pkgs = rec {
    inherit system;
    # What `runCommand` puts on PATH besides the declared inputs (nixpkgs' stdenv has these).
    stdenvTools = [ coreutils findutils gnused gnugrep gnutar gzip diffutils gawk bashInteractive ];

    # `pkgs.runCommand name env script`: `script` runs with bash (`-euo pipefail`) in an empty
    # temporary directory, PATH made of the `bin/` of `nativeBuildInputs`, `buildInputs` and
    # the stdenv tools; every other attribute of `env` becomes an environment variable.
    runCommand = name: env: script:
      let
        inputs = (env.nativeBuildInputs or [ ]) ++ (env.buildInputs or [ ]) ++ stdenvTools;
        rest = builtins.removeAttrs env [ "nativeBuildInputs" "buildInputs" ];
      in
      derivation (rest // {
        inherit name system;
        builder = bash;
        args = [ "-euo" "pipefail" "-c" ''
          export PATH=${builtins.concatStringsSep ":" (map (p: "${p}/bin") inputs)}
          cd "$TMPDIR"
          ${script}
        '' ];
      });

    coreutils = debianPackage "coreutils" [ "coreutils" ] "";
    findutils = debianPackage "findutils" [ "findutils" ] "";
    gnused = debianPackage "gnused" [ "sed" ] "";
    gnugrep = debianPackage "gnugrep" [ "grep" ] "";
    gnutar = debianPackage "gnutar" [ "tar" ] "";
    gzip = debianPackage "gzip" [ "gzip" ] "";
    diffutils = debianPackage "diffutils" [ "diffutils" ] "";
    gawk = debianPackage "gawk" [ "mawk" ] "ln -s /usr/bin/mawk $out/bin/awk";
    bashInteractive = debianPackage "bash" [ "bash" ] "";

    # Image tools.
    squashfsTools = debianPackage "squashfs-tools" [ "squashfs-tools" ] "";
    dosfstools = debianPackage "dosfstools" [ "dosfstools" ] "";
    mtools = debianPackage "mtools" [ "mtools" ] "";
    e2fsprogs = debianPackage "e2fsprogs" [ "e2fsprogs" ] "";
    binutils = debianPackage "binutils" [ "binutils" "binutils-x86-64-linux-gnu?" ] "";
    # `ldd` (the image builder lists each binary's shared libraries with it).
    glibc = { bin = debianPackage "glibc-bin" [ "libc-bin" ] ""; };
    # nixpkgs: `pkgsStatic.busybox` (the initramfs needs a static one).
    busybox = debianPackage "busybox" [ "busybox-static" ] "";
    # GRUB with its EFI modules in lib/grub/x86_64-efi, as nixpkgs' grub2_efi has them.
    grub2_efi = debianPackage "grub2-efi" [ "grub-common" "grub2-common?" "grub-efi-amd64-bin" ] ''
      mkdir -p $out/lib/grub
      ln -s /usr/lib/grub/x86_64-efi $out/lib/grub/x86_64-efi
    '';
    # The board's kernel as nixpkgs lays one out: `bzImage` and `lib/modules/<release>`
    # (Debian's linux-image-cloud-amd64: the release /vmlinuz points to).
    linux = derivation {
      name = "linux-host";
      inherit system;
      builder = bash;
      args = [ "-euo" "pipefail" "-c" ''
        PATH=/usr/bin:/bin
        # The sandbox maps /vmlinuz as a file, not as Debian's symlink: find its release by
        # content among /boot's kernels.
        image=
        for candidate in /boot/vmlinuz-*; do
          if cmp -s "$candidate" /vmlinuz; then image=$candidate; break; fi
        done
        release=''${image##*/vmlinuz-}
        [ -n "$image" ] && [ -e "/lib/modules/$release/modules.dep" ] || {
          echo "hostPkgs.linux: no kernel at /vmlinuz with modules (apt-get install linux-image-cloud-amd64)" >&2
          exit 1
        }
        mkdir -p $out/lib/modules
        ln -s "$image" $out/bzImage
        ln -s "/lib/modules/$release" "$out/lib/modules/$release"
      '' ];
    };
    linuxPackages = { kernel = linux; };

    # VM checks.
    qemu = debianPackage "qemu" [ "qemu-system-x86" ] "";
    swtpm = debianPackage "swtpm" [ "swtpm" "swtpm-tools?" ] "";
    # UEFI firmware as nixpkgs' OVMF.fd lays it out.
    OVMF = { fd = derivation {
      name = "OVMF-host";
      inherit system;
      builder = bash;
      args = [ "-euo" "pipefail" "-c" ''
        /usr/bin/mkdir -p $out/FV
        /usr/bin/ln -s /usr/share/OVMF/OVMF_CODE_4M.fd $out/FV/OVMF_CODE.fd
        /usr/bin/ln -s /usr/share/OVMF/OVMF_VARS_4M.fd $out/FV/OVMF_VARS.fd
      '' ];
    }; };

    # Building testudo: the Rust toolchain mapped at `rustSysroot`, the C toolchain, and the
    # libraries the crates link (found through pkg-config in /usr).
    rustToolchain = derivation {
      name = "rust-host";
      inherit system;
      builder = bash;
      args = [ "-euo" "pipefail" "-c" ''
        [ -x ${rustSysroot}/bin/cargo ] || {
          echo "hostPkgs.rustToolchain: map a Rust >= 1.95 sysroot at ${rustSysroot} (sandbox-paths ${rustSysroot}=\$(rustc --print sysroot))" >&2
          exit 1
        }
        /usr/bin/mkdir -p $out/bin
        /usr/bin/ln -s ${rustSysroot}/bin/cargo ${rustSysroot}/bin/rustc $out/bin/
      '' ];
    };
    cargo = rustToolchain;
    rustc = rustToolchain;
    stdenv = { cc = debianPackage "gcc" [ "gcc" "gcc-12?" "cpp?" "cpp-12?" "binutils" "binutils-x86-64-linux-gnu?" ]
      "ln -sf /usr/bin/gcc $out/bin/cc"; };
    pkg-config = debianPackage "pkg-config" [ "pkg-config" "pkgconf?" "pkgconf-bin?" ] "";
    openssl = debianPackage "openssl" [ "openssl" ] "";
    tpm2-tss = debianPackage "tpm2-tss" [ "libtss2-dev" ] "";

    # WASM apps: clang for wasm32-wasi with wasi-libc; `wasiSysroot` is its --sysroot.
    wasiClang = debianPackage "wasi-clang" [ "clang-14" "lld-14" ] ''
      ln -s /usr/bin/clang-14 $out/bin/clang
      ln -s /usr/bin/wasm-ld-14 $out/bin/wasm-ld
    '';
    wasiSysroot = "/usr";
  };
in
pkgs // { hostPkgsMeta = { inherit sandboxPaths rustSysroot; }; }
