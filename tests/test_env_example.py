"""`.env.example` documents every variable the code and the local stack read."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from diskrisk import config

ROOT = Path(__file__).resolve().parents[1]


def documented() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


def test_every_settings_field_is_documented():
    required = set()
    for obj in vars(config).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, BaseSettings)
            and obj.__module__ == config.__name__
        ):
            for field in obj.model_fields.values():
                if field.is_required() and field.alias:
                    required.add(field.alias)
    assert required, "no settings found"
    assert required - documented() == set()


def test_every_variable_the_local_stack_reads_is_documented():
    src = (ROOT / "scripts" / "localstack" / "services.py").read_text()
    used = set(re.findall(r"\be\[\"([A-Z][A-Z0-9_]*)\"\]", src))
    used |= set(re.findall(r"\be\['([A-Z][A-Z0-9_]*)'\]", src))
    used |= {
        f"{app}_DB_{part}" for app in ("AIRFLOW", "MLFLOW") for part in ("USER", "PASSWORD", "NAME")
    }
    assert used, "no variables found"
    assert used - documented() == set()


def test_generated_secrets_are_placeholders_not_values():
    text = (ROOT / ".env.example").read_text()
    for m in re.finditer(
        r"^([A-Z_]*(PASSWORD|SECRET|SECRET_KEY|ACCESS_KEY|FERNET_KEY))=(.*)$", text, re.M
    ):
        assert m.group(3).startswith("__generate"), m.group(1)
