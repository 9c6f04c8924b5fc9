"""The unified schema is derived from a header by name, for any era."""

import pyarrow as pa

from diskrisk import schema, synth


def test_required_first_and_types():
    cols = ["smart_9_raw", "failure", "date", "model", "serial_number", "capacity_bytes"]
    s = schema.schema_for(cols)
    assert s.names[:5] == list(schema.REQUIRED)
    assert s.field("date").type == pa.date32()
    assert s.field("capacity_bytes").type == pa.int64()
    assert s.field("failure").type == pa.int8()
    assert s.field("smart_9_raw").type == pa.float64()
    assert not s.field("serial_number").nullable
    assert s.field("smart_9_raw").nullable


def test_unknown_smart_ids_and_columns_are_kept():
    cols = [*schema.REQUIRED, "smart_999_normalized", "smart_999_raw", "mystery"]
    s = schema.schema_for(cols)
    assert s.field("smart_999_raw").type == pa.float64()
    assert s.field("smart_999_normalized").type == pa.float64()
    assert s.field("mystery").type == pa.string()
    assert schema.smart_ids(cols) == [999]


def test_2023_columns_typed():
    s = schema.schema_for(synth.header("modern"))
    assert s.field("datacenter").type == pa.string()
    assert s.field("is_legacy_format").type == pa.bool_()
    for c in ("cluster_id", "vault_id", "pod_id", "pod_slot_num"):
        assert s.field(c).type == pa.int64()


def test_unify_eras_by_name():
    old = schema.schema_for(synth.header("2013"))
    new = schema.schema_for(synth.header("modern"))
    u = schema.unify([old, new])
    assert set(u.names) == set(old.names) | set(new.names)
    for name in u.names:
        assert u.field(name).type == schema.type_of(name)


def test_missing_required():
    assert schema.missing_required(["date", "model"]) == [
        "serial_number",
        "capacity_bytes",
        "failure",
    ]
