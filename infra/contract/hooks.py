"""Schemathesis hooks of the room API's contract test (loaded by schemathesis.sh).

What a schema cannot say, for positive cases only (negative ones go out as generated):
- a room's `stream_key_expires_at` must be in the future: one in the past becomes 2100-01-01;
- a purchase's `Idempotency-Key` is one per purchase: each gets a new one, so that a key is
  not used again for another body (a 422 by design);
- a payment callback must be signed: it is, with the secret the test configured, so that it
  reaches the event handling behind the signature check;
- made-up credentials and refresh tokens are refused (401): every other login uses the
  seeded user's, and every other refresh a token of a session just opened, so that the
  successful answers are checked too.

The test sets LIVEGATE_CONTRACT_BASE_URL, _LOGIN (the seeded user's login body, JSON) and
_CALLBACK_SECRET; without them, logins, refreshes and callbacks go out as generated.
"""

import hashlib
import hmac
import itertools
import json
import os
import time
import uuid

import requests
import schemathesis

SIGNATURE = "livegate-signature"
IDEMPOTENCY_KEY = "idempotency-key"
# 2100-01-01, unix milliseconds.
FUTURE_MS = 4_102_444_800_000
# Alternates per operation: even turns keep what was generated.
TURNS = {"login": itertools.count(), "refresh": itertools.count()}
LOGIN = os.environ.get("LIVEGATE_CONTRACT_LOGIN")
BASE_URL = os.environ.get("LIVEGATE_CONTRACT_BASE_URL")
CALLBACK_SECRET = os.environ.get("LIVEGATE_CONTRACT_CALLBACK_SECRET")


def _positive(case):
    return case.meta is not None and case.meta.generation.mode.is_positive


def _with_header(headers, name, value):
    kept = {k: v for k, v in (headers or {}).items() if k.lower() != name}
    kept[name] = value
    return kept


def _real_turn(name):
    return LOGIN is not None and next(TURNS[name]) % 2 == 1


def _login_body():
    return json.loads(LOGIN)


def _fresh_refresh_token():
    answer = requests.post(f"{BASE_URL}/api/v1/sessions", json=_login_body(), timeout=10)
    answer.raise_for_status()
    return answer.json()["refresh_token"]


@schemathesis.hook
def before_call(context, case, kwargs):
    if not _positive(case) or not isinstance(case.body, dict):
        return
    path, method = case.operation.path, case.operation.method.upper()
    if path.endswith("/rooms") or path.endswith("/rooms/{id}"):
        expires_at = case.body.get("stream_key_expires_at")
        if isinstance(expires_at, (int, float)) and expires_at <= time.time() * 1000:
            case.body = {**case.body, "stream_key_expires_at": FUTURE_MS}
    elif path.endswith("/rooms/{id}/gifts"):
        case.headers = _with_header(case.headers, IDEMPOTENCY_KEY, str(uuid.uuid4()))
    elif path.endswith("/sessions") and method == "POST" and _real_turn("login"):
        case.body = _login_body()
    elif path.endswith("/sessions/refresh") and BASE_URL and _real_turn("refresh"):
        case.body = {"refresh_token": _fresh_refresh_token()}
    elif path.endswith("/payments/callback") and CALLBACK_SECRET:
        # What the transport sends for a JSON body: `requests` encodes it exactly so.
        body = json.dumps(case.body, allow_nan=False).encode()
        t = int(time.time())
        mac = hmac.new(CALLBACK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        case.headers = _with_header(case.headers, SIGNATURE, f"t={t},v1={mac}")
