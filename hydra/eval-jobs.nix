# What Hydra's evaluator (hydra-eval-jobs) does with a flake jobset: walk `hydraJobs` and
# list every job (its attribute path) with its derivation. Hydra is not in Debian; `cargo
# xtask nix ci` runs this with `nix eval --json` and builds the jobs with `nix-store -r`.
{ flake }:
let
  isDerivation = value: builtins.isAttrs value && (value.type or null) == "derivation";
  walk = path: value:
    if isDerivation value then
      [{ job = builtins.concatStringsSep "." path; drvPath = value.drvPath; }]
    else if builtins.isAttrs value then
      builtins.concatMap (name: walk (path ++ [ name ]) value.${name}) (builtins.attrNames value)
    else
      throw "hydraJobs.${builtins.concatStringsSep "." path} is neither a job nor a set of jobs";
in
walk [ ] flake.hydraJobs
