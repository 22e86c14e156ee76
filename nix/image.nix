# `lib.mkImage`: one system config's image (rootfs.img, disk.img, update.raucb, manifest.json)
# built by `testudo build` inside the sandbox. Everything host-specific comes from `pkgs`:
# the kernel and its modules, busybox, GRUB's EFI modules and the image tools; the WASM apps
# from their own derivation; the keys from the directory the caller names.
{ pkgs
, src
, testudo
, wasmApps
, keys
, config
, sourceDateEpoch
, name
, kernel ? pkgs.linuxPackages.kernel
}:
pkgs.runCommand "testudo-${name}-image"
{
  nativeBuildInputs = [
    testudo
    pkgs.squashfsTools
    pkgs.dosfstools
    pkgs.mtools
    pkgs.grub2_efi
    pkgs.e2fsprogs
    pkgs.binutils
    pkgs.glibc.bin
  ];
  SOURCE_DATE_EPOCH = sourceDateEpoch;
} ''
  # The source tree with its built apps beside their C sources, as a checkout has them.
  cp -r ${src} source
  chmod -R u+w source
  cp ${wasmApps}/wasm-apps/*.wasm source/wasm-apps/
  export HOME=$TMPDIR
  testudo build source/${config} -o $out --plain \
    --keys ${keys} \
    --cache $TMPDIR/cache \
    --bin-dir ${testudo}/bin \
    --kernel ${kernel}/bzImage \
    --kernel-modules ${kernel}/lib/modules \
    --busybox ${pkgs.busybox}/bin/busybox \
    --grub-modules ${pkgs.grub2_efi}/lib/grub/x86_64-efi
''
