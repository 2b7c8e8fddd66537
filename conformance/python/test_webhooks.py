#!/usr/bin/env python3
"""Outgoing webhook signatures checked by the Standard Webhooks reference library
(`standardwebhooks` from PyPI), independently of switchyard's own signing code.

Usage:
    A2A_BASE_URL=http://127.0.0.1:PORT python test_webhooks.py

The server must allow private delivery targets (--allow-private-targets): the receiver here
listens on 127.0.0.1. Checks, in order, sharing state:

    reference_vector       the library reproduces the published example signature, so the
                           checks below compare against a known-good implementation
    forwarded_and_signed   a capture session forwarding to a local receiver relays a request
                           (method, body, headers) and its webhook-id / webhook-timestamp /
                           webhook-signature verify with Webhook(secret).verify
    tampering_detected     the same headers with a changed body, or another secret, fail
                           verification

Prints one `PASS name` / `FAIL name: reason` line per check, then
`python standardwebhooks X.Y.Z: N/M passed`, and exits 1 if any check failed.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import queue
import sys
import threading
import urllib.request
from importlib.metadata import version

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

BASE_URL = os.environ.get('A2A_BASE_URL', '').rstrip('/')
LABEL = f"python standardwebhooks {version('standardwebhooks')}"
WAIT_S = 15


class CheckFailed(Exception):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE_URL + path, data=data, method=method,
                                 headers={'content-type': 'application/json'} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b'{}')


class Receiver:
    """A local HTTP receiver that answers 200 and queues what it gets."""

    def __init__(self) -> None:
        self.received: queue.Queue = queue.Queue()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get('content-length') or 0)
                body = self.rfile.read(length)
                received.put((self.command, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header('content-length', '0')
                self.end_headers()

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = _any

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/hook'


def check_reference_vector(st: dict) -> None:
    wh = Webhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')
    at = datetime.datetime.fromtimestamp(1614265330, datetime.timezone.utc)
    sig = wh.sign('msg_p5jXN8AQM9LWM0D4loKWxJek', at, '{"test": 2432232314}')
    expect(sig == 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', f'unexpected reference signature {sig}')


def check_forwarded_and_signed(st: dict) -> None:
    receiver = Receiver()
    status, created = call('POST', '/v1/agent/sessions')
    expect(status == 201, f'creating a capture session answered {status}: {created}')
    sid = created['session_id']
    status, session = call('PATCH', f'/v1/agent/sessions/{sid}/forwarding', {'url': receiver.url})
    expect(status == 200, f'PATCH forwarding answered {status}: {session}')
    secret = (session.get('forwarding') or {}).get('secret') or ''
    expect(secret.startswith('whsec_'), f'no whsec_ secret in {session}')
    payload = json.dumps({'type': 'order.created', 'data': {'id': 'ord_123', 'note': 'café ✓'}}).encode()
    req = urllib.request.Request(created['url'], data=payload, method='POST',
                                 headers={'content-type': 'application/json', 'x-origin': 'conformance'})
    with urllib.request.urlopen(req, timeout=10) as resp:
        expect(resp.status == 200, f'ingest answered {resp.status}')
    try:
        method, headers, body = receiver.received.get(timeout=WAIT_S)
    except queue.Empty:
        raise CheckFailed(f'nothing forwarded to {receiver.url} within {WAIT_S}s') from None
    expect(method == 'POST', f'forwarded as {method}')
    expect(body == payload, f'forwarded body differs: {body!r}')
    expect(headers.get('x-origin') == 'conformance', f'custom header lost: {headers}')
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError as e:
        raise CheckFailed(f'signature does not verify: {e}; headers {headers}') from None
    st.update(secret=secret, headers=headers, body=body)


def check_tampering_detected(st: dict) -> None:
    expect('headers' in st, 'no forwarded request to check (forwarded_and_signed failed)')
    for name, secret, body in [
        ('a changed body', st['secret'], st['body'] + b' '),
        ('another secret', 'whsec_' + 'A' * 43 + '=', st['body']),
    ]:
        try:
            Webhook(secret).verify(body, st['headers'])
        except WebhookVerificationError:
            continue
        raise CheckFailed(f'{name} still verified')


CHECKS = [
    ('reference_vector', check_reference_vector),
    ('forwarded_and_signed', check_forwarded_and_signed),
    ('tampering_detected', check_tampering_detected),
]


def main() -> int:
    if not BASE_URL:
        print('A2A_BASE_URL is not set', file=sys.stderr)
        return 2
    st: dict = {}
    passed = failed = 0
    for name, fn in CHECKS:
        try:
            fn(st)
        except CheckFailed as e:
            failed += 1
            print(f'FAIL {name}: {e}', flush=True)
        except Exception as e:  # noqa: BLE001 - an unexpected error fails the check, not the run
            failed += 1
            print(f'FAIL {name}: unexpected {type(e).__name__}: {e}', flush=True)
        else:
            passed += 1
            print(f'PASS {name}', flush=True)
    print(f'{LABEL}: {passed}/{passed + failed} passed', flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
