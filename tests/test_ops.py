"""Operator commands' control flow (no service: the steps around the decision are replaced)."""

from __future__ import annotations

import pytest


def test_a_failed_fine_tune_is_not_retrained_from_scratch(monkeypatch, tmp_path):
    """Only a missing champion makes a retraining round start from scratch; any other failure
    of the fine-tune stops the command instead of silently producing a different model."""
    from diskrisk import ops
    from diskrisk.models import ModelError
    from diskrisk.registry import NoModelError

    days = {f"2024-01-{d:02d}": {} for d in range(1, 11)}
    monkeypatch.setattr(ops.lake, "read_manifest", lambda prefix: {"days": days})
    monkeypatch.setattr(ops, "lake_prefix", lambda: "")
    monkeypatch.setattr(ops, "prepare_dataset", lambda cutoff: cutoff)
    scratch: list[str] = []

    def from_scratch(family, ref):
        scratch.append(ref)
        raise RuntimeError("stop here")  # the round's later steps need the real services

    monkeypatch.setattr(ops, "train_challenger", from_scratch)

    def broken(ref):
        raise ModelError("coxph did not converge")

    monkeypatch.setattr(ops, "fine_tune", broken)
    with pytest.raises(ModelError, match="did not converge"):
        ops.retrain_rounds("2024-01-01", "2024-01-10", 1, tmp_path)
    assert scratch == []

    def no_champion(ref):
        raise NoModelError("no champion yet")

    monkeypatch.setattr(ops, "fine_tune", no_champion)
    with pytest.raises(RuntimeError, match="stop here"):
        ops.retrain_rounds("2024-01-01", "2024-01-10", 1, tmp_path)
    assert scratch == ["2024-01-10"]
