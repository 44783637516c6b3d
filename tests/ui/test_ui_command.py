"""`gapstream ui`'s own checks, before anything starts: tokens for non-loopback hosts, user tokens, the extra."""

import pytest

from cli.common import CliError
from cli.main import main
from cli import ui as command
from ui.auth import principal_for, user_token


def run(argv, capsys, monkeypatch):
    monkeypatch.delenv("GAPSTREAM_UI_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code, capsys.readouterr()


def test_a_non_loopback_host_needs_a_token(capsys, monkeypatch):
    code, out = run(["ui", "--host", "0.0.0.0"], capsys, monkeypatch)
    assert code == 2
    assert out.err.startswith("gapstream: --host 0.0.0.0 is not a loopback address: set an access token")
    assert out.err.count("\n") == 1


def test_user_token_is_printed_and_opens_only_that_user(capsys, monkeypatch):
    monkeypatch.delenv("GAPSTREAM_UI_TOKEN", raising=False)
    main(["ui", "--token", "s3cret", "--user-token", "alice"])
    printed = capsys.readouterr().out.strip()
    assert printed == user_token("s3cret", "alice")
    assert principal_for(printed, "s3cret").user_id == "alice"
    code, out = run(["ui", "--user-token", "alice"], capsys, monkeypatch)
    assert code == 2 and "needs the operator token" in out.err


def test_a_missing_ui_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setattr(command, "UI_MODULES", ("starlette", "gapstream_no_such_module"))
    with pytest.raises(CliError, match=r"needs the 'ui' extra .*pip install 'gapstream\[ui\]'"):
        command.require_ui_extra()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("10.0.0.5", False),
                                            ("example.org", False)])
def test_loopback_hosts(host, loopback):
    assert command.is_loopback(host) is loopback
