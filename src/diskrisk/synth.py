"""Seeded generator of Backblaze-format daily CSVs (for tests, demos and benchmarks).

Why: the real data is big and slow to fetch; tests and benchmarks need days of any size, of
either header era, with a *known* failure mechanism so that models have signal to find.

The fleet model, vectorised with numpy (one array per drive attribute, no per-drive loop):

* every drive ages 24 power-on hours a day (``smart_9_raw``), temperature jitters;
* a degrading minority (``degrade_share``) accumulates SMART 5/187/188/197/198 counters with a
  per-drive Poisson rate; healthy drives keep them at 0 (rarely 1). Degrading drives fail
  within weeks, so without ``wear_onset`` (the daily probability that a healthy drive starts
  to degrade) a long run's later failures carry no signal; ``STATIONARY_WEAR_ONSET`` keeps the
  degrading share near ``degrade_share`` for a year;
* the daily failure hazard is ``h0 * exp(0.9 log1p(s5) + 0.6 log1p(s187) + 0.8 log1p(s197)
  + 0.4 log1p(s198) + 0.1 age_years)``, capped; a drive reports ``failure=1`` on its last day
  and disappears afterwards; a few new drives (age 0) appear every day;
* other SMART columns come from a per-model template (a model reports a fixed subset of ids,
  the rest stay empty, like real files).

Eras: ``"2013"`` writes the exact 85-column header of 2013 files; ``"modern"`` writes the
2023+ layout (``datacenter, cluster_id, vault_id, pod_id, pod_slot_num, is_legacy_format``)
with 90 SMART ids (191 columns).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from diskrisk.schema import OPTIONAL_2023, REQUIRED

if TYPE_CHECKING:
    import pandas as pd

# fmt: off
SMART_2013: tuple[int, ...] = (
    1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 15, 183, 184, *range(187, 202), 223, 225, 240, 241,
    242, 250, 251, 252, 254, 255,
)
SMART_MODERN: tuple[int, ...] = (
    1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 22, 23, 24, 27, 71, 82, 90, 160, 161,
    *range(163, 185), *range(187, 203), 206, 210, 218, 220, 222, 223, 224, 225, 226, 230, 231,
    232, 233, 234, 235, 240, 241, 242, 244, 245, 246, 247, 248, 250, 251, 252, 254,
)
# fmt: on

# (model, capacity_bytes, fleet weight)
MODELS_2013: tuple[tuple[str, int, float], ...] = (
    ("Hitachi HDS5C3030ALA630", 3000592982016, 0.35),
    ("Hitachi HDS722020ALA330", 2000398934016, 0.15),
    ("ST3000DM001", 3000592982016, 0.2),
    ("ST31500541AS", 1500301910016, 0.1),
    ("WDC WD10EADS", 1000204886016, 0.06),
    ("HGST HMS5C4040ALE640", 4000787030016, 0.06),
    ("TOSHIBA DT01ACA300", 3000592982016, 0.04),
    ("SAMSUNG HD103UJ", 1000204886016, 0.04),
)
MODELS_MODERN: tuple[tuple[str, int, float], ...] = (
    ("ST12000NM0008", 12000138625024, 0.2),
    ("ST16000NM001G", 16000900661248, 0.2),
    ("HGST HUH721212ALE604", 12000138625024, 0.12),
    ("TOSHIBA MG07ACA14TA", 14000519643136, 0.14),
    ("WDC WUH721816ALE6L4", 16000900661248, 0.12),
    ("ST8000NM0055", 8001563222016, 0.1),
    ("HGST HMS5C4040BLE640", 4000787030016, 0.07),
    ("CT250MX500SSD1", 250059350016, 0.05),
)
DEGRADING = (5, 187, 188, 197, 198)
_PREFIX = {"H": "PL", "S": "Z", "W": "WD-WX", "T": "X0", "C": "CT"}


def header(era: str) -> list[str]:
    """The exact CSV header of an era."""
    ids = _ids(era)
    extra = list(OPTIONAL_2023) if era == "modern" else []
    smart = [f"smart_{i}_{k}" for i in ids for k in ("normalized", "raw")]
    return [*REQUIRED, *extra, *smart]


def _ids(era: str) -> tuple[int, ...]:
    if era == "2013":
        return SMART_2013
    if era == "modern":
        return SMART_MODERN
    raise ValueError(f"era must be '2013' or 'modern', not {era!r}")


COEF = dict(zip(DEGRADING, (0.9, 0.6, 0.0, 0.8, 0.4), strict=True))  # per log1p(counter)
AGE_COEF = 0.1  # per year of power-on time


def log_relative_hazard(counters: np.ndarray, age_days: np.ndarray) -> np.ndarray:
    """The generator's true log hazard ratio from the ``DEGRADING`` counters (one column each,
    in that order) and the age: what a perfect model would rank drives by. On a lake's survival
    table it gives the ceiling of the C-index the models can reach (``bench/quality.py``)."""
    c = np.log1p(np.clip(np.asarray(counters, dtype=np.float64), 0, None))
    return c @ np.array([COEF[i] for i in DEGRADING]) + AGE_COEF * np.asarray(age_days) / 365.25


def true_risk(table: pd.DataFrame) -> np.ndarray:
    """:func:`log_relative_hazard` of each row of a survival table (an unreported counter: 0)."""
    counters = table[[f"smart_{i}_raw" for i in DEGRADING]].fillna(0).to_numpy()
    return log_relative_hazard(counters, table["age_days"].to_numpy())


@dataclass
class _Fleet:
    serial: np.ndarray  # object (str)
    model: np.ndarray  # int16 index into models
    age_h: np.ndarray  # int64 power-on hours
    rate: np.ndarray  # float64 counter growth per day (0 for healthy drives)
    counters: np.ndarray  # int64 [n, len(DEGRADING)]
    slot: np.ndarray  # int64 pod placement id

    def take(self, keep: np.ndarray) -> _Fleet:
        return _Fleet(
            *(
                a[keep]
                for a in (self.serial, self.model, self.age_h, self.rate, self.counters, self.slot)
            )
        )

    def concat(self, other: _Fleet) -> _Fleet:
        return _Fleet(
            *(
                np.concatenate([a, b])
                for a, b in zip(
                    (self.serial, self.model, self.age_h, self.rate, self.counters, self.slot),
                    (
                        other.serial,
                        other.model,
                        other.age_h,
                        other.rate,
                        other.counters,
                        other.slot,
                    ),
                    strict=True,
                )
            )
        )


# Daily onset probability that keeps a year's failure rate level (measured on 10k drives over
# 365 days: 116 failures in the first 30 days, 112 in the last; without onset 112 and 11).
STATIONARY_WEAR_ONSET = 4e-4


class Generator:
    """Stateful, seeded day-by-day fleet simulation; :meth:`days` yields Arrow tables."""

    def __init__(
        self,
        era: str = "modern",
        drives: int = 10_000,
        seed: int = 0,
        *,
        h0: float = 2e-5,
        degrade_share: float = 0.02,
        new_per_day: float = 3e-4,
        wear_onset: float = 0.0,
    ):
        self.era, self.seed = era, seed
        self.ids = _ids(era)
        self.header = header(era)
        self.models = MODELS_2013 if era == "2013" else MODELS_MODERN
        self.rng = np.random.default_rng(seed)
        self.h0, self.degrade_share, self.new_per_day = h0, degrade_share, new_per_day
        self.wear_onset = wear_onset
        self._next = 0
        self.fleet = self._new(drives, initial=True)
        self._templates()

    def _templates(self) -> None:
        """Per-model constant SMART values and which ids each model reports."""
        rng = np.random.default_rng(self.seed + 1)
        m = len(self.models)
        share = 0.3 if self.era == "2013" else 0.75
        self.present = {i: rng.random(m) < share for i in self.ids}
        for i in (1, 5, 9, 12, 187, 188, 194, 197, 198):
            if i in self.present:
                self.present[i][:] = True
        self.tmpl_norm = {i: rng.integers(90, 201, m) for i in self.ids}
        self.tmpl_raw = {i: rng.integers(0, 5, m) * rng.integers(0, 1000, m) for i in self.ids}

    def _new(self, n: int, initial: bool) -> _Fleet:
        rng = self.rng
        w = np.array([x[2] for x in self.models])
        model = rng.choice(len(self.models), size=n, p=w / w.sum()).astype(np.int16)
        ids = np.arange(self._next, self._next + n)
        self._next += n
        per_model = np.array([_PREFIX.get(m[0][0], "Z") for m in self.models], dtype=object)
        hexes = np.char.zfill(np.char.upper(np.char.mod("%x", ids)), 8).astype(object)
        serial = per_model[model] + f"{self.seed % 1000:03d}" + hexes
        age_h = (
            rng.gamma(2.0, 9000.0, n).astype(np.int64)
            if initial
            else rng.integers(0, 48, n).astype(np.int64)
        )
        degrading = rng.random(n) < self.degrade_share
        rate = np.where(degrading, rng.exponential(0.5, n), 0.0)
        counters = np.zeros((n, len(DEGRADING)), dtype=np.int64)
        if initial:  # degrading drives start part-way
            counters[degrading] = rng.poisson(
                rate[degrading, None] * rng.integers(0, 30, (int(degrading.sum()), 1)),
                (int(degrading.sum()), len(DEGRADING)),
            )
        slot = rng.integers(0, 1 << 30, n)
        return _Fleet(serial, model, age_h, rate, counters, slot)

    def hazard(self) -> np.ndarray:
        """Daily failure probability of every drive (the known truth)."""
        lin = log_relative_hazard(self.fleet.counters, self.fleet.age_h / 24.0)
        return np.minimum(self.h0 * np.exp(lin), 0.3)

    def step(self, day: date) -> pa.Table:
        """Advance one day and return that day's rows (failures included, then removed)."""
        rng, f = self.rng, self.fleet
        n = len(f.age_h)
        f.age_h += 24
        if self.wear_onset:  # healthy drives start to wear at a steady daily rate
            onset = (f.rate == 0) & (rng.random(n) < self.wear_onset)
            f.rate[onset] = rng.exponential(0.5, int(onset.sum()))
        grow = rng.poisson(
            f.rate[:, None] * np.array([1.0, 0.7, 0.3, 1.0, 0.8]), (n, len(DEGRADING))
        )
        grow[f.rate == 0] = rng.random((int((f.rate == 0).sum()), len(DEGRADING))) < 2e-5
        f.counters += grow
        failed = rng.random(n) < self.hazard()
        table = self._table(day, failed)
        survivors = self.fleet.take(~failed)
        k = rng.poisson(self.new_per_day * n) + int(failed.sum())
        self.fleet = survivors.concat(self._new(k, initial=False)) if k else survivors
        return table

    def _table(self, day: date, failed: np.ndarray) -> pa.Table:
        f, rng = self.fleet, self.rng
        n = len(f.age_h)
        names = [m[0] for m in self.models]
        caps = np.array([m[1] for m in self.models], dtype=np.int64)
        cols: dict[str, pa.Array] = {
            "date": pa.array(np.full(n, (day - date(1970, 1, 1)).days, np.int32)).cast(pa.date32()),
            "serial_number": pa.array(f.serial, pa.string()),
            "model": pa.array(names, pa.string()).take(pa.array(f.model.astype(np.int32))),
            "capacity_bytes": pa.array(caps[f.model]),
            "failure": pa.array(failed.astype(np.int8)),
        }
        if self.era == "modern":
            dcs = pa.array(["sac0", "sac2", "phx1", "iad1", "ams5"])
            pod = f.slot % 2000
            cols |= {
                "datacenter": dcs.take(pa.array(pod % 5)),
                "cluster_id": pa.array(pod % 7),
                "vault_id": pa.array(1000 + pod // 20),
                "pod_id": pa.array(pod % 20),
                "pod_slot_num": pa.array((f.slot // 2000) % 60),
                "is_legacy_format": pa.array(np.zeros(n, dtype=bool)),
            }
        dyn = {
            9: f.age_h,
            194: rng.integers(20, 46, n),
            12: f.age_h // 3000 + f.slot % 13,
            241: f.age_h * 5_000_000 + f.slot % 100_000,
            242: f.age_h * 9_000_000 + f.slot % 100_000,
            1: rng.integers(0, 1 << 32, n),
            7: rng.integers(0, 1 << 34, n),
        }
        for j, i in enumerate(DEGRADING):
            dyn[i] = f.counters[:, j]
        for i in self.ids:
            present = self.present[i][f.model]
            mask = None if present.all() else ~present
            norm = self.tmpl_norm[i][f.model]
            raw = dyn[i] if i in dyn else self.tmpl_raw[i][f.model]
            if i == 9:
                norm = np.maximum(100 - f.age_h // 1000, 1)
            cols[f"smart_{i}_normalized"] = pa.array(norm, pa.int64(), mask=mask)
            cols[f"smart_{i}_raw"] = pa.array(raw, pa.int64(), mask=mask)
        return pa.table([cols[c] for c in self.header], names=self.header)

    def days(self, start: date, n_days: int) -> Iterator[tuple[date, pa.Table]]:
        for k in range(n_days):
            d = start + timedelta(days=k)
            yield d, self.step(d)


def _write_csv(table: pa.Table, out: IO[bytes]) -> None:
    """Backblaze-style CSV: bare header, no quotes, empty cells for nulls.

    ``write_csv`` is single-threaded, so big tables are rendered in slices on all cores (the
    GIL is released) and written in order.
    """
    out.write((",".join(table.column_names) + "\n").encode())
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=65536)
    k = max(1, min(os.cpu_count() or 1, table.num_rows // 50_000))
    if k == 1:
        pacsv.write_csv(table, out, opts)
        return
    step = -(-table.num_rows // k)

    def render(i: int) -> bytes:
        buf = io.BytesIO()
        pacsv.write_csv(table.slice(i * step, step), buf, opts)
        return buf.getvalue()

    with ThreadPoolExecutor(k) as pool:
        for part in pool.map(render, range(k)):
            out.write(part)


def csv_bytes(table: pa.Table) -> bytes:
    """The CSV bytes of one day's table (see :func:`_write_csv`)."""
    buf = io.BytesIO()
    _write_csv(table, buf)
    return buf.getvalue()


def write_days(
    out: str | Path,
    era: str = "modern",
    drives: int = 10_000,
    days: int = 30,
    start: date | str = date(2024, 1, 1),
    seed: int = 0,
    on_day: Callable[[Path], None] | None = None,
    wear_onset: float = 0.0,
) -> list[Path]:
    """Write ``days`` daily CSVs named ``YYYY-MM-DD.csv`` into ``out``; returns their paths."""
    start = start if isinstance(start, date) else date.fromisoformat(start)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d, table in Generator(era, drives, seed, wear_onset=wear_onset).days(start, days):
        p = out / f"{d.isoformat()}.csv"
        with p.open("wb") as fh:
            _write_csv(table, fh)
        paths.append(p)
        if on_day:
            on_day(p)
    return paths
