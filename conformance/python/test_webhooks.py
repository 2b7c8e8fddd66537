#!/usr/bin/env python3
"""Outgoing webhook signatures checked by the Standard Webhooks reference library
(`standardwebhooks` from PyPI), independently of switchyard's own signing code.

Usage:
    A2A_BASE_URL=http://127.0.0.1:PORT SWITCHYARD_AUTH_SECRET=SECRET python test_webhooks.py

The server must allow private delivery targets (--allow-private-targets): the receivers here
listen on 127.0.0.1. Incoming signatures are made with Python's hmac module and the library's
Webhook.sign. Checks, in order, sharing state:

    reference_vector       the library reproduces the published example signature, so the
                           checks below compare against a known-good implementation
    forwarded_and_signed   a capture session forwarding to a local receiver relays a request
                           (method, body, headers) and its webhook-id / webhook-timestamp /
                           webhook-signature verify with Webhook(secret).verify
    tampering_detected     the same headers with a changed body, or another secret, fail
                           verification
    trigger_app            an app (admin API) declares three webhook triggers
    github_trigger         a GitHub-style request signed with hmac (X-Hub-Signature-256) runs
                           the agent and answers 200 with its output; a wrong signature is 401
    hmac_trigger           hex HMAC-SHA256 in X-Webhook-Signature, async: 202 with a task id
    standard_trigger       a request signed by Webhook.sign is accepted, its replay refused,
                           and the callback it asks for verifies with Webhook(secret).verify

Prints one `PASS name` / `FAIL name: reason` line per check, then
`python standardwebhooks X.Y.Z: N/M passed`, and exits 1 if any check failed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import queue
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version

from checks import CheckFailed, expect, http, require_base_url, run
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

ADMIN_SECRET = os.environ.get('SWITCHYARD_AUTH_SECRET', '')
GITHUB_SECRET = 'conformance-github-secret'
HMAC_SECRET = 'conformance-hmac-secret'
STANDARD_SECRET = 'whsec_' + base64.b64encode(b'conformance standard webhooks key').decode()
LABEL = f"python standardwebhooks {version('standardwebhooks')}"
WAIT_S = 15


class Receiver:
    """A local HTTP receiver that answers 200 and queues what it gets."""

    def __init__(self) -> None:
        self.received: queue.Queue = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
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

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/hook'


def check_reference_vector(st: dict) -> None:
    wh = Webhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')
    at = datetime.datetime.fromtimestamp(1614265330, datetime.timezone.utc)
    sig = wh.sign('msg_p5jXN8AQM9LWM0D4loKWxJek', at, '{"test": 2432232314}')
    expect(sig == 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', f'unexpected reference signature {sig}')


def check_forwarded_and_signed(st: dict) -> None:
    receiver = Receiver()
    status, created = http('POST', '/v1/agent/sessions')
    expect(status == 201, f'creating a capture session answered {status}: {created}')
    sid = created['session_id']
    status, session = http('PATCH', f'/v1/agent/sessions/{sid}/forwarding', {'url': receiver.url})
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


def check_trigger_app(st: dict) -> None:
    expect(bool(ADMIN_SECRET), 'SWITCHYARD_AUTH_SECRET is not set')
    suffix = uuid.uuid4().hex[:8]
    config = {'agents': {
        'gh': {'type': 'echo', 'end_state': 'completed', 'trigger': {
            'type': 'webhook', 'path': f'/webhooks/conformance-{suffix}/github', 'secret': GITHUB_SECRET,
            'signature': 'github',
            'input': {'template': 'PR {{ body.pull_request.title }} by {{ body.sender.login }}'}}},
        'hm': {'type': 'echo', 'end_state': 'completed', 'trigger': {
            'type': 'webhook', 'path': f'/webhooks/conformance-{suffix}/hmac', 'secret': HMAC_SECRET,
            'response': {'mode': 'async'}}},
        'sw': {'type': 'echo', 'end_state': 'completed', 'trigger': {
            'type': 'webhook', 'path': f'/webhooks/conformance-{suffix}/standard', 'secret': STANDARD_SECRET,
            'signature': 'standard-webhooks', 'input': {'template': 'order {{ body.id }}'},
            'response': {'mode': 'callback', 'allow_callback_header': True}}},
    }}
    status, body = http('POST', '/admin/apps', {'name': f'conformance-hooks-{suffix}', 'config_json': config},
                        bearer=ADMIN_SECRET)
    expect(status == 201, f'creating the app answered {status}: {body}')
    st['prefix'] = f'/webhooks/conformance-{suffix}'
    # Apps reach every instance within a moment; wait until the trigger answers.
    deadline = time.time() + 15
    while time.time() < deadline:
        status, _ = http('POST', st['prefix'] + '/hmac', raw=b'{}')
        if status != 404:
            return
        time.sleep(0.2)
    raise CheckFailed('the app\'s triggers never became reachable')


def check_github_trigger(st: dict) -> None:
    expect('prefix' in st, 'no trigger app (trigger_app failed)')
    payload = json.dumps({'pull_request': {'title': 'Add CI'}, 'sender': {'login': 'octocat'}}).encode()
    sig = 'sha256=' + hmac.new(GITHUB_SECRET.encode(), payload, hashlib.sha256).hexdigest()
    status, body = http('POST', st['prefix'] + '/github', raw=payload, headers={'X-Hub-Signature-256': sig})
    expect(status == 200, f'signed GitHub webhook answered {status}: {body}')
    expect(body.get('output') == 'PR Add CI by octocat', f'unexpected output {body}')
    expect(body.get('status') == 'completed', f'unexpected status {body}')
    bad = 'sha256=' + hmac.new(b'wrong secret', payload, hashlib.sha256).hexdigest()
    status, body = http('POST', st['prefix'] + '/github', raw=payload, headers={'X-Hub-Signature-256': bad})
    expect(status == 401, f'a wrong signature answered {status}: {body}')


def check_hmac_trigger(st: dict) -> None:
    expect('prefix' in st, 'no trigger app (trigger_app failed)')
    payload = b'{"event": "ping"}'
    sig = hmac.new(HMAC_SECRET.encode(), payload, hashlib.sha256).hexdigest()
    status, body = http('POST', st['prefix'] + '/hmac', raw=payload, headers={'X-Webhook-Signature': sig})
    expect(status == 202, f'signed webhook answered {status}: {body}')
    expect(body.get('status') == 'submitted' and body.get('task_id'), f'unexpected answer {body}')


def check_standard_trigger(st: dict) -> None:
    expect('prefix' in st, 'no trigger app (trigger_app failed)')
    receiver = Receiver()
    payload = json.dumps({'id': 'ord_9'}).encode()
    msg_id = f'msg_{uuid.uuid4().hex}'
    now = datetime.datetime.now(datetime.timezone.utc)
    signature = Webhook(STANDARD_SECRET).sign(msg_id, now, payload.decode())
    headers = {'webhook-id': msg_id, 'webhook-timestamp': str(int(now.timestamp())),
               'webhook-signature': signature, 'X-Callback-URL': receiver.url}
    status, body = http('POST', st['prefix'] + '/standard', raw=payload, headers=headers)
    expect(status == 202, f'a message signed by Webhook.sign answered {status}: {body}')
    status, again = http('POST', st['prefix'] + '/standard', raw=payload, headers=headers)
    expect(status == 401, f'its replay answered {status}: {again}')
    try:
        method, cb_headers, cb_body = receiver.received.get(timeout=WAIT_S)
    except queue.Empty:
        raise CheckFailed(f'no callback within {WAIT_S}s') from None
    try:
        Webhook(STANDARD_SECRET).verify(cb_body, cb_headers)
    except WebhookVerificationError as e:
        raise CheckFailed(f'the callback signature does not verify: {e}') from None
    task = json.loads(cb_body)
    expect(task.get('id') == body.get('task_id'), f'callback for another task: {task.get("id")}')
    expect((task.get('status') or {}).get('state') == 'completed', f'callback task not completed: {task}')


CHECKS = [
    ('reference_vector', check_reference_vector),
    ('forwarded_and_signed', check_forwarded_and_signed),
    ('tampering_detected', check_tampering_detected),
    ('trigger_app', check_trigger_app),
    ('github_trigger', check_github_trigger),
    ('hmac_trigger', check_hmac_trigger),
    ('standard_trigger', check_standard_trigger),
]


def main() -> int:
    if not require_base_url():
        return 2
    return run(LABEL, CHECKS, {})


if __name__ == '__main__':
    sys.exit(main())
