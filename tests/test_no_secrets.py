"""No host, port or credential is written in the code: they come from `.env`, the environment,
Docker secrets or Airflow Connections (the README's promise, enforced over every tracked file
of src/, airflow/, scripts/ and docker/)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "airflow", "scripts", "docker")
PATTERNS = {
    "IP address": re.compile(r"(?<![=\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"),
    "localhost": re.compile(r"\blocalhost\b", re.I),
    "URL with a port": re.compile(r"[a-z]+://[\w.-]+:\d{2,5}"),
    "port number": re.compile(r"\bport[\"']?\s*[:=,]\s*[\"']?\d{2,5}\b", re.I),
    "credential": re.compile(
        r"\b(password|passwd|secret|token|secret_key|access_key)[\"']?\s*[:=]\s*[\"'][^\"'${}<]{4,}[\"']",
        re.I,
    ),
    "AWS-style key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
}
# (file, the literal) -> why it is allowed
ALLOWED = {
    ("docker/airflow-entrypoint.sh", "0.0.0.0"): "the API server binds every interface of its "
    "container; the published address comes from .env",
}


def tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", *SCANNED], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / p for p in out if not p.endswith((".png", ".md"))]


def findings() -> list[tuple[str, int, str, str]]:
    found = []
    for path in tracked():
        rel = str(path.relative_to(ROOT))
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0] if path.suffix in (".py", ".sh", "") else line
            for kind, pattern in PATTERNS.items():
                for m in pattern.finditer(code):
                    if (rel, m.group(0)) not in ALLOWED:
                        found.append((rel, n, kind, m.group(0)))
    return found


def test_the_scan_covers_the_code():
    files = {str(p.relative_to(ROOT)) for p in tracked()}
    assert "src/diskrisk/config.py" in files and "airflow/dags/diskrisk_pipeline.py" in files
    assert any(f.startswith("scripts/localstack/") for f in files)


def test_no_host_port_or_credential_literal_in_code():
    assert findings() == []


@pytest.mark.parametrize(
    "line",
    [
        'url = "http://10.1.2.3:9000"',
        "HOST = 'localhost'",
        'password = "hunter2hunter2"',
        "conn = connect(port=5432)",
        'key = "AKIAABCDEFGHIJKLMNOP"',
    ],
)
def test_the_scan_would_catch_a_literal(line):
    """Every pattern catches what it is for (a scan that finds nothing must be able to)."""
    assert any(p.search(line) for p in PATTERNS.values())
