#!/usr/bin/env python3
"""App tokens checked by an independent JWT implementation (PyJWT + cryptography).

Usage:
    A2A_BASE_URL=http://127.0.0.1:PORT SWITCHYARD_AUTH_SECRET=SECRET python test_tokens.py

Environment:
    A2A_BASE_URL            server base URL (required); the server must run with --auth-secret
    SWITCHYARD_AUTH_SECRET  the server's --auth-secret, the bearer secret of /admin/* (required)
    SWITCHYARD_ISSUER       expected `iss` (default: the "issuer" the admin API answers with)
    A2A_DEBUG=1             print tracebacks of unexpected exceptions

The server mints ES256 tokens and publishes its public keys at /.well-known/jwks.json. Nothing
here reuses switchyard code: the JWKS is fetched with urllib, each key is built with
`jwt.PyJWK` (the key whose `kid` the token's header names) and the token is verified with
`jwt.decode`. The checks run in order and share state (the app, its tokens, the JWKS):

    create_app               POST /admin/apps answers 201 with an access token and an issuer
    jwks_published           the JWKS holds only public EC P-256 ES256 signing keys
    token_verifies           the token verifies against the JWKS (signature, aud, iss, times)
                             and sub == tenant_id == the app id
    tampered_payload_rejected  a token whose payload was edited fails signature verification
    key_rotation             after POST /admin/keys/rotate, a fresh token (POST
                             /admin/apps/{id}/token) carries a new kid that is in the JWKS and
                             verifies; the old key stays published, so the old token still verifies
    hs256_forgery_rejected   the server answers 401 to an HS256 token signed with the JWK's
                             public JSON as the HMAC secret (the genuine token is accepted on
                             the same request first, so the 401 is about the signature). PyJWT
                             itself refuses JWK-shaped HMAC secrets, so the forger signs on a
                             private PyJWS instance whose HS256 handler skips that guard.

Prints one `PASS name` / `FAIL name: reason` line per check, then
`python PyJWT X.Y.Z: N/M passed`, and exits 1 if any check failed.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import uuid

from importlib.metadata import version as pkg_version

import jwt

from jwt.algorithms import HMACAlgorithm

from checks import HTTP_TIMEOUT_S, CheckFailed, expect, http, require_base_url, run

ADMIN_SECRET = os.environ.get('SWITCHYARD_AUTH_SECRET', '')
EXPECTED_ISSUER = os.environ.get('SWITCHYARD_ISSUER') or None

AUDIENCE = 'switchyard'
APP_AGENT = 'helper'  # the agent of the app this script creates
APP_NAME = f'conformance-{uuid.uuid4().hex[:12]}'
CLOCK_SKEW_S = 60
REQUIRED_CLAIMS = ['iss', 'aud', 'sub', 'iat', 'nbf', 'exp', 'jti']
LABEL = f'python PyJWT {pkg_version("PyJWT")}'


def admin(method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
    return http(method, path, body, bearer=ADMIN_SECRET)


def short(body) -> str:
    s = body if isinstance(body, str) else json.dumps(body)
    return s if len(s) <= 300 else s[:300] + '...'


# ---------------------------------------------------------------------------------------------
# JWT helpers (PyJWT)
# ---------------------------------------------------------------------------------------------


def fetch_jwks() -> dict[str, dict]:
    """GET /.well-known/jwks.json without credentials; returns {kid: jwk}."""
    status, body = http('GET', '/.well-known/jwks.json')
    expect(status == 200, f'GET /.well-known/jwks.json: HTTP {status}: {short(body)}')
    expect(isinstance(body, dict) and isinstance(body.get('keys'), list), f'JWKS has no "keys" array: {short(body)}')
    keys: dict[str, dict] = {}
    for k in body['keys']:
        kid = k.get('kid')
        expect(isinstance(kid, str) and kid, f'JWKS key without a kid: {short(k)}')
        expect(kid not in keys, f'JWKS lists kid {kid} twice')
        keys[kid] = k
    expect(keys, 'JWKS is empty')
    return keys


def verify(token: str, jwks: dict[str, dict], issuer: str) -> tuple[str, dict]:
    """Verifies token against the JWKS key its header names; returns (kid, claims)."""
    header = jwt.get_unverified_header(token)
    expect(header.get('alg') == 'ES256', f'token header alg is {header.get("alg")!r}, want ES256')
    kid = header.get('kid')
    expect(isinstance(kid, str) and kid, f'token header has no kid: {header}')
    expect(kid in jwks, f'token kid {kid} is not in the JWKS (kids: {sorted(jwks)})')
    key = jwt.PyJWK(jwks[kid])
    expect(key.algorithm_name == 'ES256', f'PyJWK algorithm for kid {kid} is {key.algorithm_name!r}')
    claims = jwt.decode(
        token,
        key,
        algorithms=['ES256'],
        audience=AUDIENCE,
        issuer=issuer,
        options={'require': REQUIRED_CLAIMS},
    )
    return kid, claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))


class UnguardedHMAC(HMACAlgorithm):
    """HMAC that takes any bytes as its key.

    PyJWT (2.10+) refuses to use key-shaped input (PEM, SSH, DER, JSON that looks like a JWK)
    as an HMAC secret, exactly to stop algorithm-confusion forgeries. An attacker is not bound
    by that, so the forger below signs with this handler on a private PyJWS instance.
    """

    def prepare_key(self, key: str | bytes) -> bytes:
        return key.encode() if isinstance(key, str) else bytes(key)


def forging_jws() -> jwt.PyJWS:
    jws = jwt.PyJWS()
    jws.unregister_algorithm('HS256')
    jws.register_algorithm('HS256', UnguardedHMAC(HMACAlgorithm.SHA256))
    return jws


def message_send_body(text: str) -> dict:
    return {
        'jsonrpc': '2.0',
        'id': str(uuid.uuid4()),
        'method': 'message/send',
        'params': {
            'message': {
                'kind': 'message',
                'role': 'user',
                'messageId': str(uuid.uuid4()),
                'parts': [{'kind': 'text', 'text': text}],
            }
        },
    }


# ---------------------------------------------------------------------------------------------
# Checks. `st` carries the app, tokens, issuer and JWKS from one check to the next.
# ---------------------------------------------------------------------------------------------


def need(st: dict, *names: str) -> None:
    missing = [n for n in names if n not in st]
    expect(not missing, f'an earlier check failed, so there is no {", ".join(missing)} to check')


def check_create_app(st: dict) -> None:
    # A fresh name per run: app names are unique, and a rerun against the same server must work.
    body = {'name': APP_NAME, 'config_json': {'agents': {APP_AGENT: {'type': 'echo'}}}}
    status, resp = admin('POST', '/admin/apps', body)
    expect(status == 201, f'POST /admin/apps: HTTP {status}, want 201: {short(resp)}')
    expect(isinstance(resp, dict), f'POST /admin/apps: not a JSON object: {short(resp)}')
    app = resp.get('app') or {}
    expect(isinstance(app.get('id'), str) and app['id'], f'no app.id: {short(resp)}')
    expect(app.get('name') == APP_NAME, f'app.name is {app.get("name")!r}')
    expect(isinstance(resp.get('access_token'), str) and resp['access_token'].count('.') == 2,
           f'access_token is not a compact JWS: {short(resp)}')
    expect(str(resp.get('token_type', '')).lower() == 'bearer', f'token_type is {resp.get("token_type")!r}')
    issuer = resp.get('issuer')
    expect(isinstance(issuer, str) and issuer, f'no issuer: {short(resp)}')
    if EXPECTED_ISSUER is not None:
        expect(issuer == EXPECTED_ISSUER, f'issuer {issuer!r} != SWITCHYARD_ISSUER {EXPECTED_ISSUER!r}')
    st.update(app_id=app['id'], token=resp['access_token'], issuer=issuer)


def check_jwks_published(st: dict) -> None:
    jwks = fetch_jwks()
    for kid, k in jwks.items():
        expect(k.get('kty') == 'EC', f'kid {kid}: kty {k.get("kty")!r}, want EC')
        expect(k.get('crv') == 'P-256', f'kid {kid}: crv {k.get("crv")!r}, want P-256')
        expect(k.get('alg') == 'ES256', f'kid {kid}: alg {k.get("alg")!r}, want ES256')
        expect(k.get('use') == 'sig', f'kid {kid}: use {k.get("use")!r}, want sig')
        expect('d' not in k, f'kid {kid}: the JWKS publishes the private key (member "d")')
        for coord in ('x', 'y'):
            raw = b64url_decode(str(k.get(coord, '')))
            expect(len(raw) == 32, f'kid {kid}: {coord} is {len(raw)} bytes, want 32')
        jwt.PyJWK(k)  # cryptography must accept it as a P-256 public key
    st['jwks'] = jwks


def check_token_verifies(st: dict) -> None:
    need(st, 'token', 'jwks', 'issuer', 'app_id')
    kid, claims = verify(st['token'], st['jwks'], st['issuer'])
    app_id = st['app_id']
    expect(claims['sub'] == app_id, f'sub {claims["sub"]!r} != app id {app_id!r}')
    expect(claims.get('tenant_id') == app_id, f'tenant_id {claims.get("tenant_id")!r} != app id {app_id!r}')
    expect(claims['exp'] > claims['iat'], f'exp {claims["exp"]} is not after iat {claims["iat"]}')
    now = time.time()
    expect(claims['nbf'] <= now + CLOCK_SKEW_S, f'nbf {claims["nbf"]} is more than {CLOCK_SKEW_S}s ahead of now {int(now)}')
    expect(abs(claims['iat'] - now) <= CLOCK_SKEW_S + HTTP_TIMEOUT_S, f'iat {claims["iat"]} is far from now {int(now)}')
    st.update(kid=kid, claims=claims)


def check_tampered_payload_rejected(st: dict) -> None:
    need(st, 'token', 'jwks', 'issuer', 'claims')
    header_b64, payload_b64, sig_b64 = st['token'].split('.')
    payload = json.loads(b64url_decode(payload_b64))
    payload['sub'] = payload['tenant_id'] = 'app_' + uuid.uuid4().hex  # someone else's tenant
    tampered = '.'.join([header_b64, b64url(json.dumps(payload, separators=(',', ':')).encode()), sig_b64])
    expect(tampered != st['token'], 'tampering did not change the token')
    try:
        _, claims = verify(tampered, st['jwks'], st['issuer'])
    except jwt.InvalidSignatureError:
        return
    raise CheckFailed(f'PyJWT accepted a token with an edited payload (sub {claims["sub"]!r})')


def check_key_rotation(st: dict) -> None:
    need(st, 'token', 'kid', 'issuer', 'app_id')
    status, resp = admin('POST', '/admin/keys/rotate')
    expect(status in (200, 201), f'POST /admin/keys/rotate: HTTP {status}: {short(resp)}')
    status, resp = admin('POST', f'/admin/apps/{st["app_id"]}/token')
    expect(status in (200, 201), f'POST /admin/apps/{{id}}/token: HTTP {status}: {short(resp)}')
    expect(isinstance(resp, dict) and isinstance(resp.get('access_token'), str), f'no access_token: {short(resp)}')
    new_token = resp['access_token']
    issuer = resp.get('issuer') or st['issuer']
    expect(issuer == st['issuer'], f'issuer changed across rotation: {st["issuer"]!r} -> {issuer!r}')
    new_kid = jwt.get_unverified_header(new_token).get('kid')
    expect(new_kid != st['kid'], f'token minted after rotation still has the old kid {st["kid"]}')
    jwks = fetch_jwks()
    expect(new_kid in jwks, f'new kid {new_kid} is not in the JWKS (kids: {sorted(jwks)})')
    expect(st['kid'] in jwks, f'old kid {st["kid"]} was dropped from the JWKS by the rotation')
    kid, claims = verify(new_token, jwks, issuer)
    expect(kid == new_kid, f'verified with kid {kid}, want {new_kid}')
    expect(claims['sub'] == st['app_id'], f'new token sub {claims["sub"]!r} != app id {st["app_id"]!r}')
    expect(claims['jti'] != st['claims']['jti'], 'new token reuses the old jti')
    verify(st['token'], jwks, st['issuer'])  # tokens signed with the old key stay valid
    st.update(token=new_token, kid=new_kid, claims=claims, jwks=jwks)


def check_hs256_forgery_rejected(st: dict) -> None:
    need(st, 'token', 'kid', 'claims', 'jwks')
    path = f'/agents/{APP_AGENT}'
    # Control: the genuine token is accepted on the very same request.
    status, resp = http('POST', path, message_send_body('genuine'), bearer=st['token'])
    expect(status == 200, f'genuine token: POST {path}: HTTP {status}, want 200: {short(resp)}')
    expect(isinstance(resp, dict) and 'result' in resp, f'genuine token: no JSON-RPC result: {short(resp)}')
    # The forgery: same claims and kid, alg HS256, HMAC key = the public JWK as JSON (as a
    # confused verifier that feeds "the key" to whatever alg the header names would use it).
    jwk = st['jwks'][st['kid']]
    secrets = {
        'jwk-json': json.dumps(jwk),
        'jwk-json-compact-sorted': json.dumps(jwk, separators=(',', ':'), sort_keys=True),
    }
    jws = forging_jws()
    payload = json.dumps(st['claims'], separators=(',', ':')).encode()
    for name, secret in secrets.items():
        forged = jws.encode(payload, secret, algorithm='HS256', headers={'typ': 'JWT', 'kid': st['kid']})
        header = jwt.get_unverified_header(forged)
        expect(header.get('alg') == 'HS256' and header.get('kid') == st['kid'], f'forger produced header {header}')
        # Well-formed: a verifier confused into HS256 with that key would accept it.
        jws.decode(forged, secret, algorithms=['HS256'])
        status, resp = http('POST', path, message_send_body('forged'), bearer=forged)
        expect(status == 401, f'HS256 token (secret {name}): HTTP {status}, want 401: {short(resp)}')


CHECKS = [
    ('create_app', check_create_app),
    ('jwks_published', check_jwks_published),
    ('token_verifies', check_token_verifies),
    ('tampered_payload_rejected', check_tampered_payload_rejected),
    ('key_rotation', check_key_rotation),
    ('hs256_forgery_rejected', check_hs256_forgery_rejected),
]


def main() -> int:
    if not require_base_url():
        return 2
    if not ADMIN_SECRET:
        print('SWITCHYARD_AUTH_SECRET is not set', file=sys.stderr)
        return 2
    return run(LABEL, CHECKS, {})


if __name__ == '__main__':
    sys.exit(main())
