"""One family list (diskrisk.families): the model registry, the training default, the DAG's
``families`` param and `.env.example` all agree with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diskrisk.families import DEFAULT_FAMILIES, FAMILIES, registry

ROOT = Path(__file__).resolve().parents[1]


def test_the_list_is_well_formed():
    assert len(set(FAMILIES)) == len(FAMILIES) > 0
    assert DEFAULT_FAMILIES and set(DEFAULT_FAMILIES) <= set(FAMILIES)


def test_models_register_exactly_the_listed_families():
    from diskrisk.models import FAMILIES as MODELS

    assert list(MODELS) == list(FAMILIES)
    assert all(cls.family == name for name, cls in MODELS.items())


def test_training_default_is_the_default_list(monkeypatch, tmp_path):
    from diskrisk.config import TrainSettings

    monkeypatch.delenv("DISKRISK_TRAIN_FAMILIES", raising=False)
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(tmp_path / "absent.env"))
    assert TrainSettings().families == list(DEFAULT_FAMILIES)


def test_dag_param_offers_every_family_and_defaults_to_the_default_list():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "airflow" / "dags"))
    assert bag.import_errors == {}
    param = bag.dags["diskrisk_pipeline"].params.get_param("families")
    assert param.schema["items"]["enum"] == list(FAMILIES)
    assert param.value == list(DEFAULT_FAMILIES)


def test_env_example_shows_the_default_list():
    text = (ROOT / ".env.example").read_text()
    m = re.search(r"^# DISKRISK_TRAIN_FAMILIES=(.*)$", text, re.M)
    assert m, "DISKRISK_TRAIN_FAMILIES is not documented"
    assert json.loads(m.group(1)) == list(DEFAULT_FAMILIES)


def test_demo_families_are_known():
    from localstack.demo import DEFAULT_FAMILIES as DEMO

    assert set(DEMO) <= set(FAMILIES)


def test_registry_refuses_classes_that_disagree_with_the_list():
    def cls(name: str) -> type:
        return type(name, (), {"family": name})

    assert list(registry(*(cls(n) for n in reversed(FAMILIES)))) == list(FAMILIES)
    with pytest.raises(RuntimeError, match="do not match"):
        registry(*(cls(n) for n in FAMILIES[:-1]))
    with pytest.raises(RuntimeError, match="do not match"):
        registry(*(cls(n) for n in (*FAMILIES, "extra")))
    with pytest.raises(RuntimeError, match="do not match"):
        registry(*(cls(n) for n in (*FAMILIES, FAMILIES[0])))
