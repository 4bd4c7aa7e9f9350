"""The KEPTN_GITOPS_CDEVENTS_* settings: defaults, values, and refusals that name the variable (never the URL)."""

from __future__ import annotations

import pytest

from keptn_gitops_service.errors import ConfigError
from keptn_gitops_service.settings import Settings


def test_cdevents_are_off_by_default() -> None:
    settings = Settings.from_env({})
    assert (settings.cdevents_sink, settings.cdevents_subject) == ("", "")
    assert (settings.cdevents_mode, settings.cdevents_source) == ("binary", "/keptn-gitops-service")


def test_cdevents_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "KEPTN_GITOPS_CDEVENTS_SINK": " https://collector.example:8443/webhook/000-cdevents ",
            "KEPTN_GITOPS_CDEVENTS_MODE": "Structured",
            "KEPTN_GITOPS_CDEVENTS_SUBJECT": "cdevents.keptn",
            "KEPTN_GITOPS_CDEVENTS_SOURCE": "/keptn/prod-eu",
        }
    )
    assert settings.cdevents_sink == "https://collector.example:8443/webhook/000-cdevents"
    assert settings.cdevents_mode == "structured"
    assert settings.cdevents_subject == "cdevents.keptn"
    assert settings.cdevents_source == "/keptn/prod-eu"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KEPTN_GITOPS_CDEVENTS_SINK", "ftp://user:s3cret@host/x", "must be an http:// or https:// URL"),
        ("KEPTN_GITOPS_CDEVENTS_MODE", "json", "must be 'binary' or 'structured'"),
        ("KEPTN_GITOPS_CDEVENTS_SUBJECT", "cdevents.>", "without wildcards"),
        ("KEPTN_GITOPS_CDEVENTS_SUBJECT", "a..b", "without wildcards"),
        ("KEPTN_GITOPS_CDEVENTS_SOURCE", "my source", "must be a URI reference"),
    ],
)
def test_wrong_cdevents_settings_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value) and "s3cret" not in str(raised.value)
