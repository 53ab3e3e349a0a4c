"""The content API's settings: an admin token of at least 32 bytes once trimmed, or none."""

from __future__ import annotations

import os
import subprocess
import sys

import pydantic
import pytest
from tailor_api.settings import ApiSettings


@pytest.mark.parametrize("token", ["", "   ", "short-token", " " + "x" * 31 + "\n"])
def test_an_admin_token_under_32_bytes_after_trimming_is_refused(token: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="at least 32"):
        ApiSettings(redis_url="redis://127.0.0.1:1", stack="a/b", admin_token=token)


def test_an_admin_token_is_trimmed_before_it_is_compared() -> None:
    settings = ApiSettings(redis_url="redis://127.0.0.1:1", stack="a/b", admin_token=" " + "y" * 32 + "\n")
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "y" * 32


def test_tailor_api_refuses_to_start_with_an_empty_admin_token() -> None:
    env = {**os.environ, "TAILOR_REDIS_URL": "redis://127.0.0.1:1", "TAILOR_ADMIN_TOKEN": ""}
    command = [sys.executable, "-m", "tailor.cli.main", "api", "--stack", "a/b", "--port", "0"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "TAILOR_ADMIN_TOKEN has 0 bytes" in result.stderr
