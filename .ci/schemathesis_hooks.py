"""Schemathesis hooks for `.ci/contract`.

An `Idempotency-Key` names one request: the server answers a key it has
seen with another body 422 `idempotency_key_reused` (see the header's
description in /v1/openapi.json). Hypothesis, left alone, draws the same
few UUIDs for many different bodies, which is a client misusing keys, not
a schema-valid request. So every schema-valid key (a UUID) is replaced by
a fresh one just before the call, as a well-behaved client would send it;
keys that are not UUIDs are left as drawn, for the negative tests.
"""

import re
import uuid

import schemathesis

HEADER = "idempotency-key"
# The hyphenated form JSON Schema's `uuid` format names, bare or quoted.
UUID = re.compile(r'^"?[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"?$')


def _is_uuid(value):
    return isinstance(value, str) and UUID.match(value) is not None


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() == HEADER and _is_uuid(headers[name]):
            headers[name] = str(uuid.uuid4())
