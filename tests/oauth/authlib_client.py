"""jitgate's OAuth 2.0 surface driven by authlib, an OAuth client library nobody here wrote.

Run by `tests/it/oauth_clients.rs` against a live server, which passes what the client needs in
the environment (JITGATE_*). Prints `ok: <check>` for each check that passed; any failure raises
and exits non-zero.
"""

import json
import os
import secrets
import time

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

BASE = os.environ["JITGATE_BASE"]
SECRET = os.environ["JITGATE_DEPLOYER_SECRET"]
ALICE = os.environ["JITGATE_ALICE_TOKEN"]  # on call
DORA = os.environ["JITGATE_DORA_TOKEN"]  # a DBA, who approves
SIGNER_KEY = ECKey.import_key(open(os.environ["JITGATE_SIGNER_KEY"], "rb").read())
SIGNER_KID = os.environ["JITGATE_SIGNER_KID"]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CIBA = "urn:openid:params:grant-type:ciba"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

metadata = requests.get(BASE + "/.well-known/oauth-authorization-server", timeout=10).json()
TOKEN = metadata["token_endpoint"]
INTROSPECT = metadata["introspection_endpoint"]
REVOKE = metadata["revocation_endpoint"]


def details(action, resource, **fields):
    return json.dumps(
        [{"type": "jitgate_access", "action": action, "resource": resource, **fields}]
    )


DEPLOY = details("deploy", 'Host::"web-1"', duration="10m")


def session(method, **assertion_claims):
    """A client of jitgate authenticating with `method`."""
    if method == "private_key_jwt":
        client = OAuth2Session(
            "signer",
            SIGNER_KEY,
            token_endpoint_auth_method=method,
            revocation_endpoint_auth_method=method,
        )
        client.register_client_auth_method(
            PrivateKeyJWT(
                TOKEN,
                alg="ES256",
                headers={"kid": SIGNER_KID},
                claims=assertion_claims or None,
            )
        )
        return client
    return OAuth2Session(
        "deployer",
        SECRET,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
    )


def refused(error, call):
    """`call` must fail with the OAuth error code `error`."""
    try:
        call()
    except OAuthError as e:
        assert e.error == error, f"expected {error}, got {e.error}: {e.description}"
        return
    raise AssertionError(f"expected {error}, got a token")


def check(name):
    print(f"ok: {name}", flush=True)


for method in ["client_secret_basic", "client_secret_post", "private_key_jwt"]:
    client = session(method)
    token = client.fetch_token(
        TOKEN, grant_type="client_credentials", authorization_details=DEPLOY
    )
    assert token["token_type"] == "Bearer", token
    assert token["expires_in"] == 600, token
    assert token["scope"].startswith("deploy:web-1 deployer:"), token
    assert token["authorization_details"][0]["action"] == "deploy", token
    check(f"client credentials with {method}")

    access_token = token["access_token"]
    answer = client.introspect_token(INTROSPECT, token=access_token)
    assert answer.status_code == 200 and answer.json()["active"] is True, answer.text
    answer = client.revoke_token(REVOKE, token=access_token)
    assert answer.status_code == 200, answer.text
    answer = client.introspect_token(INTROSPECT, token=access_token)
    assert answer.json() == {"active": False}, answer.text
    check(f"introspection and revocation with {method}")

gateway = session("client_secret_basic")
token = gateway.fetch_token(
    TOKEN,
    grant_type=TOKEN_EXCHANGE,
    subject_token=ALICE,
    subject_token_type=JWT_TYPE,
    authorization_details=details("read", 'Database::"orders"', reason="INC-1"),
)
assert token["issued_token_type"] == ACCESS_TOKEN_TYPE, token
assert token["scope"] == "db:read:orders", token
check("token exchange with authorization_details")

# An escalated request: pending, polled, approved by a DBA, polled to its token.
last_answer = {}


def keep_answer(response):
    last_answer["body"] = response.json()
    return response


gateway.register_compliance_hook("access_token_response", keep_answer)
write = details("write", 'Database::"orders"', reason="INC-2")
refused(
    "authorization_pending",
    lambda: gateway.fetch_token(
        TOKEN,
        grant_type=TOKEN_EXCHANGE,
        subject_token=ALICE,
        subject_token_type=JWT_TYPE,
        authorization_details=write,
    ),
)
request_id = last_answer["body"]["auth_req_id"]
interval = last_answer["body"]["interval"]
assert interval == 5, last_answer


def poll():
    return gateway.fetch_token(
        TOKEN,
        grant_type=CIBA,
        auth_req_id=request_id,
        subject_token=ALICE,
        subject_token_type=JWT_TYPE,
    )


refused("authorization_pending", poll)
approved = requests.post(
    f"{BASE}/v1/access-requests/{request_id}/approve",
    headers={"Authorization": f"Bearer {DORA}"},
    json={"comment": "go"},
    timeout=10,
)
assert approved.status_code == 200, approved.text
token = poll()
assert token["scope"] == "db:write:orders", token
assert token["jitgate_request_id"] == request_id, token
check("an escalated request polled to its token after approval")

# Errors, each the RFC's code.
refused(
    "unsupported_grant_type",
    lambda: gateway.fetch_token(TOKEN, grant_type="password", username="a", password="b"),
)
refused(
    "invalid_request",
    lambda: gateway.fetch_token(
        TOKEN, grant_type=TOKEN_EXCHANGE, authorization_details=DEPLOY
    ),
)
refused(
    "invalid_authorization_details",
    lambda: gateway.fetch_token(
        TOKEN,
        grant_type="client_credentials",
        authorization_details='[{"type": "jitgate_access", "action": "deploy"}]',
    ),
)
now = int(time.time())
refused(
    "invalid_client",
    lambda: session("private_key_jwt", iat=now - 600, exp=now - 300).fetch_token(
        TOKEN, grant_type="client_credentials", authorization_details=DEPLOY
    ),
)
refused(
    "invalid_client",
    lambda: OAuth2Session("deployer", "jg_wrong").fetch_token(
        TOKEN, grant_type="client_credentials", authorization_details=DEPLOY
    ),
)
check("errors carry the RFC error codes")

# DPoP (RFC 9449) with a proof made by joserfc, the JOSE library authlib builds on.
dpop_key = ECKey.generate_key("P-256")


def dpop_proof(method, url, jti=None):
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_key.as_dict(private=False)}
    claims = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
    }
    return jose_jwt.encode(header, claims, dpop_key, algorithms=["ES256"])


client = session("client_secret_basic")
proof = dpop_proof("POST", TOKEN)
token = client.fetch_token(
    TOKEN,
    grant_type="client_credentials",
    authorization_details=DEPLOY,
    headers={"DPoP": proof},
)
assert token["token_type"] == "DPoP", token
answer = client.introspect_token(INTROSPECT, token=token["access_token"]).json()
assert answer["token_type"] == "DPoP", answer
assert answer["cnf"] == {"jkt": dpop_key.thumbprint()}, answer
for bad_proof in [proof, dpop_proof("POST", INTROSPECT), dpop_proof("GET", TOKEN)]:
    refused(
        "invalid_dpop_proof",
        lambda: client.fetch_token(
            TOKEN,
            grant_type="client_credentials",
            authorization_details=DEPLOY,
            headers={"DPoP": bad_proof},
        ),
    )
check("DPoP with a library-generated proof")
