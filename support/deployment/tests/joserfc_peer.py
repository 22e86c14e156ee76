"""An independent JOSE implementation (PyPI joserfc) as the peer of testudo-deployment's
interop test (`joserfc_interop.rs`). One command per run, the answer as JSON on stdout:

  verify JWK_JSON TOKEN         -> {"verified": true, "header", "payload", "thumbprint"}
                                   or {"verified": false, "error"}
  sign KEY PAYLOAD KID          -> {"token", "public_pem", "thumbprint"}
      KEY: a PKCS#8 PEM file, or `generate` (a new Ed25519 key);
      KID: the header's kid, or `own` (the RFC 7638 thumbprint of KEY).
"""

import json
import sys
import warnings

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

# joserfc flags "EdDSA" as deprecated by RFC 9864 (in favour of "Ed25519"); the deployment
# format uses "EdDSA" (RFC 8037), so the warning is expected here.
warnings.filterwarnings("ignore", message="EdDSA is deprecated")

ALGORITHMS = ["EdDSA"]
TOKEN_TYPE = "testudo-deployment+jws"


def verify(jwk_json, token):
    key = OKPKey.import_key(json.loads(jwk_json))
    try:
        obj = jws.deserialize_compact(token, key, algorithms=ALGORITHMS)
    except JoseError as error:
        return {"verified": False, "error": repr(error)}
    return {
        "verified": True,
        "header": obj.headers(),
        "payload": json.loads(obj.payload),
        "thumbprint": key.thumbprint(),
    }


def sign(key_source, payload, kid):
    if key_source == "generate":
        key = OKPKey.generate_key("Ed25519")
    else:
        with open(key_source, "rb") as pem:
            key = OKPKey.import_key(pem.read())
    if kid == "own":
        kid = key.thumbprint()
    header = {"alg": "EdDSA", "kid": kid, "typ": TOKEN_TYPE}
    token = jws.serialize_compact(header, payload.encode(), key, algorithms=ALGORITHMS)
    return {
        "token": token,
        "public_pem": key.as_pem(private=False).decode(),
        "thumbprint": key.thumbprint(),
    }


def main(argv):
    commands = {"verify": verify, "sign": sign}
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit(f"usage: {argv[0]} verify JWK TOKEN | sign KEY PAYLOAD KID")
    print(json.dumps(commands[argv[1]](*argv[2:])))


if __name__ == "__main__":
    main(sys.argv)
