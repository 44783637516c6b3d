"""Named classes of bad input for `gapstream.requests`: each must end in a dead letter (never a crash or silence).

`routable` says whether the message still names a well-formed request_id and user_id, so that the client waiting
on `results` also gets a `failed` result.
"""

import json


def _req(**fields) -> bytes:
    body = {"request_id": "REQ", "user_id": "eve", "prompt": "a lighthouse"}
    for key, value in fields.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode()


_DROP = object()

# (id, raw message value, routable)
BAD_REQUESTS: list[tuple[str, bytes, bool]] = [
    ("not-json", b"{this is not json", False),
    ("truncated-json", b'{"request_id": "x", "user_id": "eve", "prom', False),
    ("empty-message", b"", False),
    ("json-null", b"null", False),
    ("json-array", b'[{"request_id": "x"}]', False),
    ("json-string", b'"a lighthouse"', False),
    ("json-number", b"42", False),
    ("binary-garbage", bytes(range(256)) * 4, False),
    ("invalid-utf8-inside-json", b'{"request_id": "x", "user_id": "eve", "prompt": "\xff\xfe"}', False),
    ("deeply-nested-json", b"[" * 100_000 + b"]" * 100_000, False),
    ("missing-request-id", _req(request_id=_DROP), False),
    ("missing-user-id", _req(user_id=_DROP), False),
    ("missing-prompt", _req(prompt=_DROP), True),
    ("request-id-wrong-type", _req(request_id=12345), False),
    ("user-id-wrong-type", _req(user_id=["eve"]), False),
    ("prompt-wrong-type", _req(prompt={"text": "a lighthouse"}), True),
    ("empty-prompt", _req(prompt=""), True),
    ("blank-prompt", _req(prompt="   \n\t "), True),
    ("huge-prompt", _req(prompt="a" * 5000), True),
    ("prompt-control-characters", _req(prompt="a light\x1b[31mhouse\x00"), True),
    ("prompt-lone-surrogate", b'{"request_id": "REQ", "user_id": "eve", "prompt": "a \\ud800 house"}', True),
    ("user-id-glob-star", _req(user_id="*"), False),
    ("user-id-colon-key-injection", _req(user_id="eve:mem:alice"), False),
    ("user-id-space", _req(user_id="eve alice"), False),
    ("user-id-newline", _req(user_id="eve\r\nDEL *"), False),
    ("user-id-empty", _req(user_id=""), False),
    ("user-id-too-long", _req(user_id="e" * 129), False),
    ("user-id-homoglyph", _req(user_id="\u0435ve"), False),  # Cyrillic e
    ("request-id-space", _req(request_id="r 1"), False),
    ("request-id-newline", _req(request_id="r1\nr2"), False),
    ("width-not-multiple-of-8", _req(width=13), True),
    ("width-negative", _req(width=-64), True),
    ("width-huge", _req(width=1 << 20), True),
    ("width-string", _req(width="64px"), True),
    ("steps-zero", _req(steps=0), True),
    ("steps-too-many", _req(steps=10_000), True),
    ("seed-negative", _req(seed=-1), True),
    ("seed-too-large", _req(seed=2**64), True),
    ("drafts-zero", _req(drafts=0), True),
    ("max-rounds-too-many", _req(max_rounds=99), True),
    ("accept-score-above-one", _req(accept_score=1.5), True),
    ("guidance-nan", b'{"request_id": "REQ", "user_id": "eve", "prompt": "a lighthouse", "guidance": NaN}', True),
    ("guidance-infinity", b'{"request_id": "REQ", "user_id": "eve", "prompt": "x", "guidance": Infinity}', True),
    ("parent-request-id-injection", _req(parent_request_id="* FLUSHALL"), True),
]

# Not bad: tolerated by design (unknown fields are ignored; any Unicode prompt is fine).
TOLERATED_REQUESTS: list[tuple[str, bytes]] = [
    ("extra-fields", _req(colour="teal", nested={"a": [1, 2, {"b": None}]}, schema_version=99)),
    ("unicode-prompt", _req(prompt="\u6a2a\u6d5c\u306e\u706f\u53f0 \U0001f3ee \u202eRTL\u202c e\u0301")),
]


def with_ids(raw: bytes, request_id: str) -> bytes:
    return raw.replace(b'"REQ"', json.dumps(request_id).encode())
