"""The CLI under bad input: one line on stderr starting `gapstream:` and a non-zero exit, never a traceback.

Runs `cli.main.main` in this process; nothing here reaches a broker (every case fails before that).
"""

import re

import pytest
from hypothesis import given, settings, strategies as st

from schemas.records import USER_ID_PATTERN
from cli.main import main

pytestmark = pytest.mark.fuzz

# (id, argv, extra environment)
BAD_CLI: list[tuple[str, list[str], dict]] = [
    ("unknown-command", ["paint", "a cat"], {}),
    ("unknown-option", ["run", "a cat", "--user", "eve", "--colour", "red"], {}),
    ("missing-prompt", ["run", "--user", "eve"], {}),
    ("missing-user", ["run", "a cat"], {}),
    ("width-not-a-number", ["run", "a cat", "--user", "eve", "--width", "abc"], {}),
    ("width-not-multiple-of-8", ["run", "a cat", "--user", "eve", "--width", "13"], {}),
    ("width-too-large", ["run", "a cat", "--user", "eve", "--width", "99999"], {}),
    ("steps-zero", ["run", "a cat", "--user", "eve", "--steps", "0"], {}),
    ("max-rounds-too-many", ["run", "a cat", "--user", "eve", "--max-rounds", "9"], {}),
    ("accept-score-above-one", ["run", "a cat", "--user", "eve", "--accept-score", "2"], {}),
    ("drafts-zero", ["run", "a cat", "--user", "eve", "--drafts", "0"], {}),
    ("seed-negative", ["run", "a cat", "--user", "eve", "--seed", "-1"], {}),
    ("user-glob-star", ["run", "a cat", "--user", "eve*"], {}),
    ("user-colon-injection", ["run", "a cat", "--user", "eve:mem:alice"], {}),
    ("user-newline", ["run", "a cat", "--user", "eve\nFLUSHALL"], {}),
    ("user-empty", ["run", "a cat", "--user", ""], {}),
    ("empty-prompt", ["run", "", "--user", "eve"], {}),
    ("prompt-control-characters", ["run", "a \x1b[2J cat", "--user", "eve"], {}),
    ("huge-prompt", ["run", "a" * 5000, "--user", "eve"], {}),
    ("request-id-space", ["run", "a cat", "--user", "eve", "--request-id", "r 1"], {}),
    ("memory-show-star", ["memory", "show", "*"], {"GAPSTREAM_REDIS_URL": "redis://127.0.0.1:1/0"}),
    ("memory-forget-colon", ["memory", "forget", "a:b"], {"GAPSTREAM_REDIS_URL": "redis://127.0.0.1:1/0"}),
    ("memory-add-space-user", ["memory", "add", "a b", "I like teal"],
     {"GAPSTREAM_REDIS_URL": "redis://127.0.0.1:1/0"}),
    ("worker-unknown-stage", ["worker", "--stages", "planner,paint"], {"GAPSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                                                                      "GAPSTREAM_REDIS_URL": "redis://x"}),
    ("submit-without-broker", ["submit", "a cat", "--user", "eve"], {}),
    ("dlq-without-broker", ["dlq", "list"], {}),
    ("dlq-replay-nothing", ["dlq", "replay"], {"GAPSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}),
    ("env-partitions-not-a-number", ["memory", "show", "eve"], {"GAPSTREAM_TOPIC_PARTITIONS": "many"}),
    ("env-size-not-multiple-of-8", ["memory", "show", "eve"], {"GAPSTREAM_DEFAULT_SIZE": "13"}),
    ("env-bad-security-protocol", ["memory", "show", "eve"], {"GAPSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS9"}),
    ("env-deadline-negative", ["memory", "show", "eve"], {"GAPSTREAM_REQUEST_DEADLINE_S": "-5"}),
    ("env-topic-prefix-injection", ["memory", "show", "eve"], {"GAPSTREAM_TOPIC_PREFIX": "a b*"}),
]


def _run(argv, monkeypatch, capsys, env=None):
    for name in ("GAPSTREAM_KAFKA_BOOTSTRAP", "GAPSTREAM_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GAPSTREAM_HOME", "/tmp/gapstream-cli-fuzz")
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def _assert_clear_error(code, err):
    assert code not in (0, None), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gapstream: "), err
    assert "Traceback" not in err and "unexpected" not in err, err


@pytest.mark.parametrize("name,argv,env", BAD_CLI, ids=[name for name, _, _ in BAD_CLI])
def test_each_named_bad_cli_input_is_a_one_line_error(name, argv, env, monkeypatch, capsys):
    _assert_clear_error(*_run(argv, monkeypatch, capsys, env))


_VALID_USER = re.compile(USER_ID_PATTERN)


@settings(max_examples=60, deadline=None)
@given(user=st.text(max_size=200).filter(lambda u: not _VALID_USER.fullmatch(u) and "\x00" not in u))
def test_any_invalid_user_id_is_refused_before_anything_runs(user):
    with pytest.MonkeyPatch.context() as monkeypatch:
        import io
        import contextlib

        err = io.StringIO()
        monkeypatch.setenv("GAPSTREAM_REDIS_URL", "redis://127.0.0.1:1/0")
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
            main(["memory", "show", user])
        _assert_clear_error(exit_info.value.code, err.getvalue())


@settings(max_examples=60, deadline=None)
@given(option=st.sampled_from(["--width", "--height", "--steps", "--drafts", "--max-rounds", "--seed"]),
       value=st.one_of(st.integers(max_value=0), st.integers(min_value=100_000),
                       st.text(max_size=20).filter(lambda t: not t.strip().lstrip("+-").isdigit())))
def test_out_of_range_or_garbled_numbers_are_refused(option, value):
    value = str(value)
    if value.strip().lstrip("+").isdigit() and option in ("--seed",) and int(value) < 2**32:
        return  # a valid seed
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(["run", "a cat", "--user", "eve", option, value])
    _assert_clear_error(exit_info.value.code, err.getvalue())
