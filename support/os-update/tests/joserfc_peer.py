"""An independent JOSE implementation (PyPI joserfc) as the peer of testudo-os-update's
interop test (`joserfc_interop.rs`): Azure Device Update's manifest signature, a JWS whose
header's `sjwk` is a JWS of the signing key's JWK by a root key. One command per run, the
answer as JSON on stdout:

  verify ROOT_JWK_JSON MANIFEST SIGNATURE
      -> {"verified": true, "header", "sjwk_header", "signing_jwk", "payload",
          "root_thumbprint", "signing_thumbprint", "hash_matches"}
         or {"verified": false, "stage", "error"}
  sign MANIFEST
      -> {"roots" (a JWK set of the root key), "root_kid", "signing_kid", "signature",
          and refused variants: "unknown_kid", "impostor_root", "impostor_signing",
          "alg_none", "hs256", "sjwk_hs256"}

Keys are made fresh by joserfc (root RSA 3072, signing RSA 2048, impostors of the same
sizes); key ids are their RFC 7638 thumbprints. The `none` and HS256 variants are made by
hand: joserfc refuses to make them, which is the point.
"""

import base64
import hashlib
import hmac
import json
import sys

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from joserfc.registry import HeaderParameter

REGISTRY = jws.JWSRegistry(
    header_registry={"sjwk": HeaderParameter("ADU signing key token", "str")},
    algorithms=["RS256"],
)
# joserfc reads headers of at most 512 bytes by default; a header carrying `sjwk` is a few KiB
# (ADU's own about 2.5 KiB). 16 KiB is the crate's MAX_SIGNATURE_BYTES.
REGISTRY.max_header_length = 16 * 1024


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def manifest_hash(manifest):
    return base64.b64encode(hashlib.sha256(manifest.encode()).digest()).decode()


def verify(root_jwk_json, manifest, signature):
    root = RSAKey.import_key(json.loads(root_jwk_json))
    stage = "extract"
    try:
        outer = jws.extract_compact(signature.encode(), registry=REGISTRY)
        sjwk = outer.headers()["sjwk"]
        stage = "sjwk"
        inner = jws.deserialize_compact(sjwk, root, registry=REGISTRY)
        signing_jwk = json.loads(inner.payload)
        signing = RSAKey.import_key(signing_jwk)
        stage = "signature"
        verified = jws.deserialize_compact(signature, signing, registry=REGISTRY)
    except JoseError as error:
        return {"verified": False, "stage": stage, "error": repr(error)}
    payload = json.loads(verified.payload)
    return {
        "verified": True,
        "header": verified.headers(),
        "sjwk_header": inner.headers(),
        "signing_jwk": signing_jwk,
        "payload": payload,
        "root_thumbprint": root.thumbprint(),
        "signing_thumbprint": signing.thumbprint(),
        "hash_matches": payload.get("sha256") == manifest_hash(manifest),
    }


def public_jwk(key):
    jwk = key.as_dict(private=False)
    jwk.update({"alg": "RS256", "kid": key.thumbprint()})
    return jwk


def sjwk_token(signing, root, kid):
    payload = json.dumps(public_jwk(signing)).encode()
    return jws.serialize_compact({"alg": "RS256", "kid": kid}, payload, root, registry=REGISTRY)


def chain(manifest, sjwk, signing):
    payload = json.dumps({"sha256": manifest_hash(manifest)}).encode()
    return jws.serialize_compact({"alg": "RS256", "sjwk": sjwk}, payload, signing, registry=REGISTRY)


def by_hand(header, payload, secret):
    """A compact JWS with any header; HS256 over it with `secret`, or no signature."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(payload)
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def sign(manifest):
    root = RSAKey.generate_key(3072)
    signing = RSAKey.generate_key(2048)
    impostor_root = RSAKey.generate_key(3072)
    impostor_signing = RSAKey.generate_key(2048)
    root_kid = root.thumbprint()
    good_sjwk = sjwk_token(signing, root, root_kid)
    hashed = json.dumps({"sha256": manifest_hash(manifest)}).encode()
    # The keys' public halves as an attacker has them, used as HMAC secrets.
    signing_pem = signing.as_pem(private=False)
    root_pem = root.as_pem(private=False)
    return {
        "roots": {"keys": [public_jwk(root)]},
        "root_kid": root_kid,
        "signing_kid": signing.thumbprint(),
        "signature": chain(manifest, good_sjwk, signing),
        "unknown_kid": chain(manifest, sjwk_token(signing, root, "not-a-root"), signing),
        "impostor_root": chain(manifest, sjwk_token(signing, impostor_root, root_kid), signing),
        "impostor_signing": chain(manifest, good_sjwk, impostor_signing),
        "alg_none": by_hand({"alg": "none", "sjwk": good_sjwk}, hashed, None),
        "hs256": by_hand({"alg": "HS256", "sjwk": good_sjwk}, hashed, signing_pem),
        "sjwk_hs256": chain(
            manifest,
            by_hand(
                {"alg": "HS256", "kid": root_kid},
                json.dumps(public_jwk(signing)).encode(),
                root_pem,
            ),
            signing,
        ),
    }


def main(argv):
    commands = {"verify": verify, "sign": sign}
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit(f"usage: {argv[0]} verify ROOT_JWK MANIFEST SIGNATURE | sign MANIFEST")
    print(json.dumps(commands[argv[1]](*argv[2:])))


if __name__ == "__main__":
    main(sys.argv)
