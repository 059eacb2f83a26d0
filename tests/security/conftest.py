"""One real server (uvicorn on 127.0.0.1 + the runtime) for the security tests, running
tests/apps/secure_app.py with an API key, a secret, a JWT secret, a JWKS file and a
webhook secret set up before it starts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from servers import RunningServer
from squall.security.keys import KeyStore
from squall.security.secrets import SecretStore

APP = str(Path(__file__).resolve().parents[1] / "apps" / "secure_app.py")
JWT_SECRET = "a-shared-secret-for-hs256-tokens-0123456789"
HOOK_SECRET = "webhook-secret"
TOKEN_VALUE = "tok-9f8e7d6c5b4a"


class Keys:
    """Signing material: RSA and EC keys published in a JWKS file."""

    def __init__(self, directory: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        jwks = {"keys": [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())),
             "kid": "rsa1", "alg": "RS256", "use": "sig"},
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())),
             "kid": "ec1", "alg": "ES256", "use": "sig"},
        ]}
        self.jwks_path = directory / "jwks.json"
        self.jwks_path.write_text(json.dumps(jwks))

    def hs(self, **claims) -> str:
        return jwt.encode(_claims(claims), JWT_SECRET, algorithm="HS256")

    def rs(self, kid: str = "rsa1", **claims) -> str:
        return jwt.encode(_claims(claims, iss=None), self.rsa, algorithm="RS256",
                          headers={"kid": kid})

    def es(self, **claims) -> str:
        return jwt.encode(_claims(claims, iss=None), self.ec, algorithm="ES256",
                          headers={"kid": "ec1"})


def _claims(extra: dict, iss: str | None = "https://id.test") -> dict:
    now = int(time.time())
    base = {"sub": "user-1", "aud": "secure", "iat": now, "exp": now + 300,
            "scope": "me:read"}
    if iss:
        base["iss"] = iss
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="package")
def secure(tmp_path_factory):
    data = tmp_path_factory.mktemp("secure")
    keys = Keys(data)
    store = KeyStore.for_data_dir(data)
    api_key, _ = store.create("tests")
    revoked, record = store.create("revoked")
    store.revoke(record.id)
    SecretStore.for_data_dir(data).set("SECURE_TEST_TOKEN", TOKEN_VALUE)
    env = {"SECURE_TEST_JWT_SECRET": JWT_SECRET, "SECURE_TEST_JWKS": str(keys.jwks_path),
           "SECURE_TEST_HOOK_SECRET": HOOK_SECRET}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with RunningServer(APP, str(data)) as server:
            server.api_key, server.revoked_key, server.keys = api_key, revoked, keys
            server.data_dir = data
            yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="package")
def http(secure):
    with httpx.Client(base_url=secure.url, timeout=20) as client:
        yield client
