"""Stock OAuth 2.0 and JWT libraries against a running vault.

Usage: oauth_clients.py BASE_URL CLIENT_ID CLIENT_SECRET

(a) authlib's OAuth2Session fetches a token with its defaults (client
    credentials, HTTP Basic client authentication, form body) from the token
    endpoint named in the RFC 8414 metadata, creates a customer with it and
    reads the profile back for a purpose; a resource server introspects the
    token (RFC 7662);
(b) PyJWT's PyJWKClient verifies a vault token against the published JWKS.
"""

import sys

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from jwt import PyJWKClient


def main() -> int:
    base, client_id, client_secret = sys.argv[1:4]
    meta = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10)
    meta.raise_for_status()
    meta = meta.json()
    assert meta["issuer"] == base, meta
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"], meta

    # (a) authlib with its defaults.
    session = OAuth2Session(client_id, client_secret)
    token = session.fetch_token(meta["token_endpoint"])
    assert token["token_type"] == "Bearer", token
    assert token.get("access_token"), "authlib returned no access token"
    created = session.post(
        f"{base}/v1/customers?purpose=support",
        json={"fields": {"email": {"value": "ada@example.com", "purposes": ["support"]}}},
        timeout=10,
    )
    assert created.status_code == 201, (created.status_code, created.text)
    customer = created.json()["id"]
    profile = session.get(f"{base}/v1/customers/{customer}?purpose=support", timeout=10)
    assert profile.status_code == 200, (profile.status_code, profile.text)
    assert profile.json()["fields"]["email"] == "ada@example.com", "profile read back"
    print("authlib: token fetched, customer created and read for a purpose")

    seen = requests.post(
        meta["introspection_endpoint"],
        data={"token": token["access_token"]},
        auth=(client_id, client_secret),
        timeout=10,
    )
    assert seen.status_code == 200, (seen.status_code, seen.text)
    assert seen.json()["active"] is True, seen.text
    assert seen.json()["sub"] == client_id, seen.text
    print("introspection: active")

    # (b) PyJWT against the JWKS.
    access = token["access_token"]
    jwks = PyJWKClient(meta["jwks_uri"])
    key = jwks.get_signing_key_from_jwt(access)
    # The token's iss is the metadata's issuer (RFC 8414).
    claims = jwt.decode(
        access, key.key, algorithms=["EdDSA"], audience="pii-vault", issuer=meta["issuer"]
    )
    assert claims["sub"] == client_id, claims
    assert jwt.get_unverified_header(access)["kid"] == key.key_id
    head, body, sig = access.split(".")
    forged = f"{head}.{body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
    try:
        jwt.decode(forged, key.key, algorithms=["EdDSA"], audience="pii-vault")
    except jwt.InvalidSignatureError:
        pass
    else:
        raise AssertionError("a forged signature verified")
    print("PyJWT: token verified with the published JWKS; a forged one refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
