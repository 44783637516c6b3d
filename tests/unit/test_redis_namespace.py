"""One Redis namespace per deployment, derived from its app id (issue 14)."""

import pytest

from infra.settings import Settings, SettingsError


def _settings(**env):
    return Settings.from_env({"GAPSTREAM_HOME": "/tmp/gapstream-unit", **env})


def test_the_default_deployment_keeps_the_old_gapstream_prefix_and_others_get_their_own():
    assert _settings().redis_namespace == "gapstream:"
    assert _settings(GAPSTREAM_APP_ID="dep1").redis_namespace == "dep1:"


@pytest.mark.parametrize("app_id", ["a:b", "dep 1", "dep*", "x\ny"])
def test_an_app_id_that_would_break_the_namespace_is_refused(app_id):
    with pytest.raises(SettingsError, match="GAPSTREAM_APP_ID"):
        _settings(GAPSTREAM_APP_ID=app_id)
