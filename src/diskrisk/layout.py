"""Where everything lives in the lake bucket: the one place object keys are built.

Every key is ``prefix`` + a fixed layout (``DISKRISK_LAKE_PREFIX`` lets several deployments or
tests share a bucket); the bucket itself is :func:`diskrisk.s3.bucket`. The table in
docs/contracts.md mirrors this module.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path


def raw_root(prefix: str = "") -> str:
    return f"{prefix}raw/"


def raw(day: date, prefix: str = "") -> str:
    """Original bytes of one Backblaze day."""
    return f"{raw_root(prefix)}{day.year:04d}/{day.isoformat()}.csv"


def file_record(name: str, prefix: str = "") -> str:
    """A whole-file problem (empty, not UTF-8, corrupt zip member...) with its reason."""
    return f"{prefix}quarantine/_files/{Path(name).name}.json"


def quarantine(day: date, name: str, prefix: str = "") -> str:
    """Bad rows of one day, with their line and reason."""
    return f"{prefix}quarantine/date={day.isoformat()}/{Path(name).name}"


def lake_root(prefix: str = "") -> str:
    """The Hive-partitioned Parquet lake (``date=YYYY-MM-DD`` partitions)."""
    return f"{prefix}lake"


def lake_partitions(prefix: str = "") -> str:
    """The key prefix every day partition starts with (for listings)."""
    return f"{lake_root(prefix)}/date="


def lake_day(day: date, prefix: str = "") -> str:
    return f"{lake_partitions(prefix)}{day.isoformat()}/part-0.parquet"


def manifest(prefix: str = "") -> str:
    """Per-day rows and digests of the lake: what has been validated from which raw bytes."""
    return f"{lake_root(prefix)}/_manifest.json"


def datasets_root(prefix: str = "") -> str:
    return f"{prefix}datasets/"


def dataset(cutoff: str, digest: str, prefix: str = "") -> str:
    """Folder of one training run's tables; the digest covers every input, so equal inputs
    reuse the folder."""
    return f"{datasets_root(prefix)}{cutoff}-{digest}"


FITS = ".fits/"  # what every stored fit's key holds


def fit(table_key: str, recipe: str) -> str:
    """A model fitted on a run's table (``recipe``: family and digest of its params and code
    revision), kept beside the table so the ensemble, a retry or the judging of the champion's
    recipe loads what a challenger task fitted instead of fitting it again."""
    return f"{table_key.removesuffix('.parquet')}{FITS}{recipe}.pkl"


def stats_state(table: str, prefix: str = "") -> str:
    """The stats stage's aggregates, kept beside the partitions (``_`` names are not data to
    Hive-style readers) so a daily run folds in only the days it has not seen."""
    return f"{lake_root(prefix)}/_stats/{table}.parquet"


def stats_report(name: str, prefix: str = "") -> str:
    return f"{prefix}reports/stats/{name}"


def drift_report(day: str, name: str, prefix: str = "") -> str:
    return f"{prefix}reports/drift/{day}/{name}"
