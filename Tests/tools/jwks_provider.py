#!/usr/bin/env python3
"""A small OpenID Connect provider for the end-to-end tests: publishes a JSON Web Key Set whose
keys the `cryptography` package makes, mints tokens with them, and rotates on request.

  jwks_provider.py PORT

Its issuer is http://127.0.0.1:PORT. Keys (made at start): rsa-a, rsa-b (RSA 2048, RS256),
ec-c, ec-d (P-256, ES256) and enc-e (RSA, published with "use": "enc"). The published set also
holds an HMAC key ("kty": "oct", kid hmac-f), which a verifier must ignore.

  GET  /.well-known/openid-configuration  discovery: issuer and jwks_uri
  GET  /jwks.json                          the published keys (Cache-Control: max-age=3600)
  POST /control/publish   {"kids": [...]}  publish these keys from now on
  POST /control/fail      {"status": N}    answer N to discovery and JWKS requests (0: stop failing)
  GET  /control/count                      {"jwks": n, "discovery": m, "failed": k} requests so far
  POST /control/mint      {"key": KID, "alg": "RS256"|"ES256", "kid": KID or null (header's kid,
                           default the key's; null leaves it out), "claims": {...}, "count": N}
                           -> {"tokens": [...]}: N tokens, each with its own jti
Only 127.0.0.1 listens.
"""
import base64
import http.server
import json
import sys
import threading
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

port = int(sys.argv[1])
issuer = f"http://127.0.0.1:{port}"
lock = threading.Lock()
counts = {"jwks": 0, "discovery": 0, "failed": 0}
state = {"published": ["rsa-a", "ec-c", "enc-e"], "fail": 0}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(value: int, length: int = 0) -> bytes:
    return value.to_bytes(length or (value.bit_length() + 7) // 8, "big")


keys = {
    "rsa-a": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa-b": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ec-c": ec.generate_private_key(ec.SECP256R1()),
    "ec-d": ec.generate_private_key(ec.SECP256R1()),
    "enc-e": rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


def jwk(kid: str) -> dict:
    key = keys[kid]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        entry = {"kty": "RSA", "kid": kid, "n": b64url(int_bytes(numbers.n)), "e": b64url(int_bytes(numbers.e))}
        entry.update({"use": "enc", "alg": "RSA-OAEP"} if kid.startswith("enc") else {"use": "sig", "alg": "RS256"})
        return entry
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": "P-256", "use": "sig", "alg": "ES256",
            "x": b64url(int_bytes(numbers.x, 32)), "y": b64url(int_bytes(numbers.y, 32))}


def key_set() -> dict:
    with lock:
        published = list(state["published"])
    entries = [jwk(kid) for kid in published]
    entries.append({"kty": "oct", "kid": "hmac-f", "alg": "HS256", "k": b64url(b"an hmac key a verifier must ignore")})
    return {"keys": entries}


def mint(key_id: str, alg: str, kid, claims: dict) -> str:
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    claims = dict(claims, jti=str(uuid.uuid4()))
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    key = keys[key_id]
    if alg == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = int_bytes(r, 32) + int_bytes(s, 32)
    else:
        raise ValueError(alg)
    return signing_input.decode() + "." + b64url(signature)


class Handler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def answer(self, status: int, document, headers=None):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ("/jwks.json", "/.well-known/openid-configuration"):
            with lock:
                counts["jwks" if path == "/jwks.json" else "discovery"] += 1
                fail = state["fail"]
                if fail:
                    counts["failed"] += 1
            if fail:
                return self.answer(fail, {"error": "failing on request"})
            if path == "/jwks.json":
                return self.answer(200, key_set(), {"Cache-Control": "public, max-age=3600"})
            return self.answer(200, {"issuer": issuer, "jwks_uri": f"{issuer}/jwks.json"})
        if path == "/control/count":
            with lock:
                return self.answer(200, dict(counts))
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/control/publish":
            with lock:
                state["published"] = list(request["kids"])
            return self.answer(200, key_set())
        if self.path == "/control/fail":
            with lock:
                state["fail"] = int(request["status"])
            return self.answer(200, {"fail": state["fail"]})
        if self.path == "/control/mint":
            kid = request.get("kid", request["key"])
            tokens = [mint(request["key"], request["alg"], kid, request["claims"]) for _ in range(int(request.get("count", 1)))]
            return self.answer(200, {"tokens": tokens})
        self.answer(404, {"error": "not found"})

    def log_message(self, format, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
