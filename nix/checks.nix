# The checks `nix flake check` builds, for one testudo build and one key directory:
# - `config-<example>`: `testudo check` of each example config;
# - `reproducible`: the gateway image built twice (different output paths, separate build
#   caches) is byte for byte the same;
# - `vm-boot`: the gateway image boots under QEMU (TCG, swtpm TPM, OVMF) until testudo-init
#   reports every component ready: `testudo vm run --until-ready`, as the cargo VM tests run it;
# - `vm-rollback`: the VM scenario `rollback` (`testudo vm scenario rollback`, the one the cargo
#   VM test runs): slot A confirms itself, a broken update in slot B gets its boot tries, the
#   device falls back to A and abandons B by itself.
{ pkgs, testudo, keys, examples, mkImage, src, imageName ? "gateway-checked" }:
let
  image = name: mkImage { inherit pkgs testudo keys src name; example = "gateway"; };
  # `imageName`: the flake passes its development-keys image's name, so the checks reuse it.
  first = image imageName;
  second = image "${imageName}-again";
  scenarioImage = name: mkImage {
    inherit pkgs testudo keys src;
    name = "rollback-${name}";
    config = "images/scenarios/rollback-${name}.ncl";
  };
  firmware = "--firmware-code ${pkgs.OVMF.fd}/FV/OVMF_CODE.fd --firmware-vars ${pkgs.OVMF.fd}/FV/OVMF_VARS.fd";
  configCheck = example: config:
    pkgs.runCommand "testudo-check-${example}" { nativeBuildInputs = [ testudo ]; } ''
      HOME=$TMPDIR testudo check ${src}/${config} > $out
    '';
in
builtins.listToAttrs (map
  (example: { name = "config-${example}"; value = configCheck example examples.${example}; })
  (builtins.attrNames examples))
// {
  reproducible = pkgs.runCommand "testudo-reproducible" { } ''
    for output in rootfs.img disk.img update.raucb manifest.json; do
      cmp ${first}/$output ${second}/$output
    done
    sha256sum ${first}/* | sed 's|${first}/||' > $out
  '';

  vm-boot = pkgs.runCommand "testudo-vm-boot"
    { nativeBuildInputs = [ testudo pkgs.qemu pkgs.swtpm ]; } ''
    export HOME=$TMPDIR
    testudo vm run ${first}/disk.img --snapshot --until-ready --timeout 300 ${firmware} \
      > console.log 2>&1 || {
      cat console.log >&2
      exit 1
    }
    cp console.log $out
  '';

  vm-rollback = pkgs.runCommand "testudo-vm-rollback"
    { nativeBuildInputs = [ testudo pkgs.qemu pkgs.swtpm pkgs.mtools ]; } ''
    export HOME=$TMPDIR
    testudo vm scenario rollback --quiet ${firmware} \
      --good-disk ${scenarioImage "good"}/disk.img \
      --broken-bundle ${scenarioImage "broken"}/update.raucb \
      --keyring ${keys}/ca.pem --work $TMPDIR/work 2> steps.log || {
      cat steps.log >&2
      exit 1
    }
    cp steps.log $out
  '';
}
