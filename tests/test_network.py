"""The plugins on enterprise networks: a certificate they cannot verify, and HTTPS proxies.

- A TLS verification failure can never succeed on a retry: it is one attempt, and the error names the
  ``ca_bundle`` setting to fix (``marketo_ca_bundle`` / ``dynamics_ca_bundle`` in the target).
- Proxies come from the ``proxy`` setting or from HTTPS_PROXY/NO_PROXY, while REQUESTS_CA_BUNDLE still cannot
  replace the configured CA. Tested through a real CONNECT proxy (:mod:`tests.connect_proxy`), which counts
  the tunnels it opens and keeps everything it sees in clear.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mktdyn_common.errors import ConfigurationError
from mktdyn_common.redact import redact
from mktdyn_common.transport import make_session
from mktdyn_sandbox.tls import ensure_tls
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection

from tests.connect_proxy import connect_proxy
from tests.tap_dynamics.helpers import tap_config as dynamics_config
from tests.tap_marketo.tapcli import tap_config as marketo_config
from tests.test_fatal_errors import BIN, DYNAMICS, MARKETO, reason

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def config_for(tap: str, info: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    config = marketo_config(info) if tap == MARKETO else dynamics_config(info)
    return {**config, **overrides}


def other_ca(tmp_path: Path) -> str:
    """A CA that did not sign the sandbox's certificate."""
    return str(ensure_tls(tmp_path / "other-ca").ca_cert)


def run_tap(
    tap: str, tmp_path: Path, config: dict[str, Any], *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The tap's console script with exactly the proxy variables given (and a CA variable that must be ignored)."""
    path = tmp_path / f"{tap}.json"
    path.write_text(json.dumps(config))
    base = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARIABLES}
    base["REQUESTS_CA_BUNDLE"] = str(tmp_path / "no-such-bundle.pem")  # would break every request if read
    return subprocess.run(
        [str(BIN / tap), "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, **env},
        check=False,
    )


# -- TLS verification failures ----------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "marketo_"])
def test_marketo_tls_failure_is_one_attempt_naming_the_ca_setting(
    sandbox_info: dict[str, Any], tmp_path: Path, prefix: str
) -> None:
    config = {f"{prefix}{k}": v for k, v in marketo_config(sandbox_info, ca_bundle=other_ca(tmp_path)).items()}
    waits: list[float] = []
    client = MarketoClient(MarketoConnection.from_config(config, prefix), sleep=waits.append)
    with pytest.raises(ConfigurationError) as raised:
        client.describe_leads()
    assert raised.value.setting == f"{prefix}ca_bundle"
    assert "TLS verification of" in str(raised.value)
    assert "certificate verify failed" in str(raised.value)
    assert waits == []
    assert client.calls["auth"] == 1


@pytest.mark.parametrize("prefix", ["", "dynamics_"])
def test_dataverse_tls_failure_is_one_attempt_naming_the_ca_setting(
    sandbox_info: dict[str, Any], tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {f"{prefix}{k}": v for k, v in dynamics_config(sandbox_info, ca_bundle=other_ca(tmp_path)).items()}
    waits: list[float] = []
    monkeypatch.setattr("tap_dynamics_leads.auth.time.sleep", waits.append)  # the authority client's retries
    client = DataverseClient(DataverseConnection.from_config(config, prefix), sleep=waits.append)
    with pytest.raises(ConfigurationError) as raised:
        client.entity_definition("lead")
    assert raised.value.setting == f"{prefix}ca_bundle"
    assert "certificate verify failed" in str(raised.value)
    assert waits == []


@pytest.mark.parametrize("tap", [MARKETO, DYNAMICS])
def test_a_tap_with_the_wrong_ca_stops_with_one_line_naming_ca_bundle(
    tap: str, sandbox_info: dict[str, Any], tmp_path: Path
) -> None:
    result = run_tap(tap, tmp_path, config_for(tap, sandbox_info, ca_bundle=other_ca(tmp_path)), "--discover")
    assert result.returncode == 1
    line = reason(result)
    assert line.startswith(f"{tap}: setting 'ca_bundle': TLS verification of 127.0.0.1:"), line
    assert "retry" not in result.stderr.lower()


# -- proxies ----------------------------------------------------------------------------------------------
def sandbox_hosts(info: dict[str, Any]) -> set[str]:
    return {urlsplit(info[key]).netloc for key in ("marketo_url", "dynamics_url", "dynamics_authority")}


def test_the_tap_runs_through_the_proxy_of_https_proxy_and_no_proxy_bypasses_it(
    sandbox_info: dict[str, Any], tmp_path: Path
) -> None:
    config = config_for(MARKETO, sandbox_info)
    with connect_proxy() as proxy:
        result = run_tap(MARKETO, tmp_path, config, HTTPS_PROXY=proxy.url, NO_PROXY="")
        assert result.returncode == 0, result.stderr[-3000:]
        records = [json.loads(line) for line in result.stdout.splitlines() if '"RECORD"' in line]
        assert records
        assert proxy.tunnels
        assert set(proxy.tunnels) <= sandbox_hosts(sandbox_info)
        seen = "".join(proxy.log)
        assert sandbox_info["marketo_client_secret"] not in seen
        assert all(head.startswith("CONNECT ") for head in proxy.log)

        tunnels = len(proxy.tunnels)
        bypassed = run_tap(MARKETO, tmp_path, config, "--discover", HTTPS_PROXY=proxy.url, NO_PROXY="127.0.0.1")
        assert bypassed.returncode == 0, bypassed.stderr[-3000:]
        assert len(proxy.tunnels) == tunnels


@pytest.mark.parametrize("tap", [MARKETO, DYNAMICS])
def test_the_proxy_setting_carries_every_request_with_the_ca_still_explicit(
    tap: str, sandbox_info: dict[str, Any], tmp_path: Path
) -> None:
    with connect_proxy() as proxy:
        result = run_tap(tap, tmp_path, config_for(tap, sandbox_info, proxy=proxy.url), "--discover")
        assert result.returncode == 0, result.stderr[-3000:]
        assert '"streams"' in result.stdout
        assert proxy.tunnels
        assert set(proxy.tunnels) <= sandbox_hosts(sandbox_info)
        secret = sandbox_info["marketo_client_secret" if tap == MARKETO else "dynamics_client_secret"]
        assert secret not in "".join(proxy.log)

        # The CA is still the configured one: through the proxy, a wrong CA fails as it does without one.
        wrong = run_tap(tap, tmp_path, config_for(tap, sandbox_info, proxy=proxy.url, ca_bundle=other_ca(tmp_path)))
        assert wrong.returncode == 1
        assert "setting 'ca_bundle': TLS verification" in reason(wrong)


def test_entra_token_requests_go_through_the_connection_proxy(sandbox_info: dict[str, Any]) -> None:
    with connect_proxy() as proxy:
        connection = DataverseConnection.from_config(dynamics_config(sandbox_info, proxy=proxy.url))
        client = DataverseClient(connection)
        try:
            client.entity_definition("lead")
        finally:
            client.close()
        authority = urlsplit(sandbox_info["dynamics_authority"]).netloc
        # msal's session (discovery and the token POST) opens its own tunnel besides the Web API's.
        assert proxy.tunnels.count(authority) >= 2


def test_a_proxy_setting_is_validated_and_its_password_never_shown(sandbox_info: dict[str, Any]) -> None:
    config = marketo_config(sandbox_info, proxy="http://sync:Proxy-Pa55word@proxy.example.com:3128")
    assert MarketoConnection.from_config(config).proxy == config["proxy"]
    assert redact(f"cannot reach {config['proxy']}") == "cannot reach http://sync:***@proxy.example.com:3128"
    with pytest.raises(ConfigurationError, match="setting 'proxy': must be an http"):
        MarketoConnection.from_config(marketo_config(sandbox_info, proxy="socks5://proxy:1080"))
    with pytest.raises(ConfigurationError, match="setting 'dynamics_proxy'"):
        DataverseConnection.from_config(
            {f"dynamics_{k}": v for k, v in dynamics_config(sandbox_info, proxy="proxy.example.com").items()},
            "dynamics_",
        )


def test_a_proxy_password_from_the_environment_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://sync:Env-Pa55word@proxy.example.com:3128")
    session = make_session(None, "mktdyn-test")
    assert session.proxies_for("https://example.com/")["https"] == "http://sync:Env-Pa55word@proxy.example.com:3128"
    assert redact("via http://sync:Env-Pa55word@proxy") == "via http://sync:***@proxy"
