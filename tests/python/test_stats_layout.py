"""The bulk-stats decoder on hand-made bytes (no element needed)."""

import struct

import pytest

import rtpsynth as rs

COLUMNS = ["channel", "packets-received", "octets-received"]


def packed(rows, version=rs.LAYOUT_VERSION):
    words = [version, len(COLUMNS), len(rows)] + [w for r in rows for w in r]
    return struct.pack(f"<{len(words)}Q", *words)


def test_dicts_and_numpy_agree():
    data = packed([[0, 10, 1720], [7, 3, 516]])
    dicts = rs.to_dicts(data, COLUMNS)
    assert dicts == [{"channel": 0, "packets-received": 10, "octets-received": 1720},
                     {"channel": 7, "packets-received": 3, "octets-received": 516}]
    arr = rs.to_numpy(data, COLUMNS)
    assert list(arr["channel"]) == [0, 7]
    assert int(arr["octets-received"].sum()) == 2236


def test_empty_server_has_header_only():
    assert rs.to_dicts(packed([]), COLUMNS) == []
    assert len(rs.to_numpy(packed([]), COLUMNS)) == 0


@pytest.mark.parametrize("data, why", [
    (packed([[0, 1, 2]], version=1), "version 1"),
    (packed([[0, 1, 2]])[:-8], "whole rows"),
    (struct.pack("<6Q", rs.LAYOUT_VERSION, 3, 5, 0, 1, 2), "5 rows"),
])
def test_bad_layouts_are_refused(data, why):
    with pytest.raises(rs.LayoutError, match=why):
        rs.to_dicts(data, COLUMNS)
