"""Shared fixtures. Integration tests talk to the local stack's real services (`make up`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the local stack package, for its settings
os.environ.setdefault("DISKRISK_ENV_FILE", str(ROOT / ".env"))


def setting_for_tests(name: str, env_file: Path) -> str | None:
    """A setting the tests themselves read (BACKBLAZE_TEST_DATA): the environment, then the env
    file, like every other setting."""
    if os.environ.get(name):
        return os.environ[name]
    from dotenv import dotenv_values

    return dotenv_values(env_file).get(name) if env_file.is_file() else None


# Test modules read it from os.environ at import time.
if _data := setting_for_tests("BACKBLAZE_TEST_DATA", Path(os.environ["DISKRISK_ENV_FILE"])):
    os.environ["BACKBLAZE_TEST_DATA"] = _data


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The local stack's settings (.env overlaid by the environment)."""
    env_file = Path(os.environ["DISKRISK_ENV_FILE"])
    if not env_file.exists():
        pytest.fail(f"{env_file} is missing: run `make up` (integration tests need the stack)")
    from localstack.services import env

    return env()


@pytest.fixture(scope="session")
def backblaze_dir() -> Path:
    """The real 2013 Backblaze days, read in place (never copied into the repo)."""
    path = Path(os.environ.get("BACKBLAZE_TEST_DATA", "../shared/data/backblaze-2013"))
    path = path if path.is_absolute() else (ROOT / path).resolve()
    if not any(path.glob("*.csv")):
        pytest.fail(f"no Backblaze CSVs in {path} (set BACKBLAZE_TEST_DATA)")
    return path
