"""The command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pydecode", *args], capture_output=True, text=True, timeout=timeout)


def test_show_config() -> None:
    out = run_cli("show-config")
    assert out.returncode == 0, out.stderr
    for needle in ("pydecode 0.", "torch", "backends", "torch   available", "philox_uniform"):
        assert needle in out.stdout


def test_show_config_json() -> None:
    out = run_cli("show-config", "--json")
    info = json.loads(out.stdout)
    assert set(info["backends"]) == {"cuda", "triton", "cpu", "torch"}
    assert info["backends"]["torch"] == "available"
    assert "philox_uniform" in info["ops"]


def test_no_command_prints_help_and_fails() -> None:
    out = run_cli()
    assert out.returncode == 2 and "show-config" in out.stdout


@pytest.mark.parametrize("args, message", [(["demo", "--steps", "0"], "--steps must be >= 1"),
                                           (["demo", "--batch", "-1"], "--batch must be >= 1")])
def test_bad_flag_values_are_one_line(args: list[str], message: str) -> None:
    out = run_cli(*args)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"pydecode: error: {message}, got {args[-1]}"]


def test_bad_backend_env_is_one_line() -> None:
    import os

    env = dict(os.environ, PYDECODE_BACKEND="tpu")
    out = subprocess.run([sys.executable, "-m", "pydecode", "show-config"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 2, out.stdout
    assert "Traceback" not in out.stderr and "PYDECODE_BACKEND" in out.stderr


def test_demo_checks_pass() -> None:
    out = run_cli("demo", "--steps", "6", "--batch", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical token ids   : yes" in out.stdout and "all checks passed" in out.stdout
