"""What the stdlib-only conformance scripts (test_tokens.py, test_webhooks.py) share: the
check runner with its `PASS`/`FAIL` lines and `LABEL: N/M passed` summary, and one HTTP helper.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import urllib.error
import urllib.request

BASE_URL = os.environ.get('A2A_BASE_URL', '').rstrip('/')
HTTP_TIMEOUT_S = 20


class CheckFailed(Exception):
    """An assertion of a check did not hold."""


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def http(method: str, path: str, body: dict | None = None, bearer: str | None = None,
         headers: dict | None = None, raw: bytes | None = None) -> tuple[int, dict | str]:
    """Sends one request (a JSON `body`, or `raw` bytes); returns (status, parsed JSON body, or
    the raw text if not JSON)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(BASE_URL + path, data=data, method=method)
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    if bearer is not None:
        req.add_header('Authorization', f'Bearer {bearer}')
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as e:  # 4xx/5xx still carry a status and a body
        status, payload = e.code, e.read()
    text = payload.decode('utf-8', 'replace')
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def run(label: str, checks: list, state: dict) -> int:
    """Runs the checks in order (sharing `state`); prints one line each and the summary;
    returns the exit code (1 if any failed). A2A_DEBUG=1 prints tracebacks of unexpected errors."""
    passed = failed = 0
    for name, fn in checks:
        try:
            fn(state)
        except CheckFailed as e:
            failed += 1
            print(f'FAIL {name}: ' + str(e).replace('\n', ' '), flush=True)
        except Exception as e:  # any other error fails the check, with its reason
            failed += 1
            reason = str(e).replace('\n', ' ')
            print(f'FAIL {name}: {type(e).__name__}: {reason}', flush=True)
            if os.environ.get('A2A_DEBUG'):
                traceback.print_exc()
        else:
            passed += 1
            print(f'PASS {name}', flush=True)
    print(f'{label}: {passed}/{passed + failed} passed', flush=True)
    return 1 if failed else 0


def require_base_url() -> bool:
    if not BASE_URL:
        print('A2A_BASE_URL is not set', file=sys.stderr)
    return bool(BASE_URL)
