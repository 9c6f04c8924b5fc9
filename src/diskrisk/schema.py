"""The unified, typed schema of Backblaze Drive Stats rows across all eras.

Backblaze has changed the daily CSV header many times (85 columns in 2013, ~190 since 2023,
SMART ids added and removed along the way). Rather than freezing one column list, the schema is
derived *from each file's header, by column name*, so every era maps onto the same types and no
column is ever dropped:

============================  =============  ======================================================
column                        arrow type     notes
============================  =============  ======================================================
``date``                      ``date32``     the observation day (must equal the file's day)
``serial_number``             ``string``     drive id; non-empty
``model``                     ``string``     vendor model string, e.g. ``ST4000DM000``
``capacity_bytes``            ``int64``      may be ``-1`` in some real files (unknown)
``failure``                   ``int8``       1 on the day the drive failed, else 0
``datacenter``                ``string``     optional, 2023+ files
``cluster_id``                ``int64``      optional, 2023+
``vault_id``                  ``int64``      optional, 2023+
``pod_id``                    ``int64``      optional, 2023+
``pod_slot_num``              ``int64``      optional, 2023+
``is_legacy_format``          ``bool``       optional, 2023+ (accepts true/false/1/0)
``smart_<id>_normalized``     ``float64``    nullable, for ANY numeric id found in the header
``smart_<id>_raw``            ``float64``    nullable; raw counters can exceed int64 (48-bit+
                                             vendor-packed values), float64 keeps them all and
                                             NaN/null for "not reported"
anything else                 ``string``     unknown non-SMART columns are kept verbatim
============================  =============  ======================================================

The five required columns always come first in the order above; every other column keeps the
header's order. Parquet partitions of different eras therefore differ only in *which* columns
they carry, never in the type of a same-named column, so they union by name cleanly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pyarrow as pa

REQUIRED: tuple[str, ...] = ("date", "serial_number", "model", "capacity_bytes", "failure")
#: Separates a serial from a date in the score store's row keys (``serial#YYYY-MM-DD``): a serial
#: holding it could not be stored, so validation refuses such rows and the sink sets them aside.
SERIAL_KEY_SEP = "#"
SERIAL_SEP_REASON = f"serial_number: contains {SERIAL_KEY_SEP!r}, the score store's key separator"


def serial_problem(serial: str) -> str | None:
    """Why the score store cannot key a drive by ``serial`` (None: it can)."""
    if not serial.strip():
        return "serial_number: empty"
    if SERIAL_KEY_SEP in serial:
        return SERIAL_SEP_REASON
    return None


OPTIONAL_2023: tuple[str, ...] = (
    "datacenter",
    "cluster_id",
    "vault_id",
    "pod_id",
    "pod_slot_num",
    "is_legacy_format",
)
SMART_RE = re.compile(r"^smart_(\d+)_(normalized|raw)$")

_FIXED: dict[str, pa.DataType] = {
    "date": pa.date32(),
    "serial_number": pa.string(),
    "model": pa.string(),
    "capacity_bytes": pa.int64(),
    "failure": pa.int8(),
    "datacenter": pa.string(),
    "cluster_id": pa.int64(),
    "vault_id": pa.int64(),
    "pod_id": pa.int64(),
    "pod_slot_num": pa.int64(),
    "is_legacy_format": pa.bool_(),
}


def type_of(name: str) -> pa.DataType:
    """Arrow type of a column, decided by its name alone (so every era agrees)."""
    if name in _FIXED:
        return _FIXED[name]
    if SMART_RE.match(name):
        return pa.float64()
    return pa.string()


def field_of(name: str) -> pa.Field:
    """Nullable field for a column; required columns are non-nullable after validation."""
    return pa.field(name, type_of(name), nullable=name not in REQUIRED)


def ordered(columns: Iterable[str]) -> list[str]:
    """Required columns first (fixed order), then the rest in their original order."""
    cols = list(columns)
    return [c for c in REQUIRED if c in cols] + [c for c in cols if c not in REQUIRED]


def schema_for(columns: Sequence[str]) -> pa.Schema:
    """The typed schema of a file with this header (duplicates are an error upstream)."""
    return pa.schema([field_of(c) for c in ordered(columns)])


def smart_ids(columns: Iterable[str]) -> list[int]:
    """Sorted SMART attribute ids present in a header (normalized or raw)."""
    ids = {int(m.group(1)) for c in columns if (m := SMART_RE.match(c))}
    return sorted(ids)


def missing_required(columns: Iterable[str]) -> list[str]:
    """Required columns absent from a header, in contract order."""
    present = set(columns)
    return [c for c in REQUIRED if c not in present]


def unify(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """Union of several day schemas by name (types agree by construction), required first."""
    names: list[str] = []
    seen: set[str] = set()
    for s in schemas:
        for n in s.names:
            if n not in seen:
                seen.add(n)
                names.append(n)
    return schema_for(names)
