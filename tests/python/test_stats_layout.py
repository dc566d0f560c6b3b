"""The stats-packed decoder on hand-made bytes (no element needed): every
layout version the elements produce, signed columns, and what is refused."""

import struct

import numpy as np
import pytest

import rtpsynth
from rtpsynth import Column, Layout


def packed(version, rows, ncols=None, nrows=None):
    """stats-packed bytes: the header row then `rows`, all as wide as the
    layout of `version` (or `ncols`); values may be negative (two's
    complement, as the element stores signed columns)."""
    width = ncols if ncols is not None else len(rtpsynth.LAYOUTS[version].columns)
    header = [version, width, len(rows) if nrows is None else nrows] + [0] * (width - 3)
    words = [w & 0xFFFF_FFFF_FFFF_FFFF for w in header + [w for r in rows for w in r]]
    return struct.pack(f"<{len(words)}Q", *words)


def test_every_known_version_decodes_by_its_own_columns():
    assert sorted(rtpsynth.LAYOUTS) == [1, 2, 3, 4, 5]
    assert rtpsynth.LAYOUT_VERSION == 5
    for version, lay in rtpsynth.LAYOUTS.items():
        names = lay.names
        rows = [[7] + list(range(100, 100 + len(names) - 1)), [9] + [0] * (len(names) - 1)]
        data = packed(version, rows)
        want = [dict(zip(names, r)) for r in rows]
        assert rtpsynth.to_dicts(data) == want
        assert rtpsynth.to_dicts(data, names) == want
        arr = rtpsynth.to_numpy(data, names)
        assert arr.dtype.names == tuple(names)
        assert [dict(zip(names, map(int, rec))) for rec in arr] == want


def test_version_1_has_no_dropped_kernel_and_version_2_has_it_after_dropped_not_rtp():
    v1, v2 = rtpsynth.LAYOUTS[1].names, rtpsynth.LAYOUTS[2].names
    assert "dropped-kernel" not in v1
    assert v2.index("dropped-kernel") == v2.index("dropped-not-rtp") + 1
    assert [n for n in v2 if n != "dropped-kernel"] == v1


def test_version_4_adds_the_relay_counters_between_the_counters_and_the_session():
    v3, v4 = rtpsynth.LAYOUTS[3].names, rtpsynth.LAYOUTS[4].names
    at = v4.index("local-port") + 1
    assert v4[at : at + 2] == ["relayed", "not-relayed"]
    assert v4[:at] + v4[at + 2 :] == v3
    assert [c.name for c in rtpsynth.LAYOUTS[4].columns if c.signed] == ["packets-lost", "remote-packets-lost"]


def test_version_5_adds_relayed_offloaded_after_not_relayed():
    v4, v5 = rtpsynth.LAYOUTS[4].names, rtpsynth.LAYOUTS[5].names
    at = v5.index("not-relayed") + 1
    assert v5[at] == "relayed-offloaded"
    assert v5[:at] + v5[at + 1 :] == v4
    assert [c.name for c in rtpsynth.LAYOUTS[5].columns if c.signed] == ["packets-lost", "remote-packets-lost"]


def test_signed_columns_decode_as_int64(monkeypatch):
    # A layout with a signed column, as a future version adds one: one
    # table entry, and both decoders read two's complement.
    lay = Layout(99, (Column("channel"), Column("a"), Column("lost", signed=True), Column("b")))
    monkeypatch.setitem(rtpsynth.LAYOUTS, 99, lay)
    data = packed(99, [[0, 2**64 - 1, -3, 5], [1, 0, 2**63 - 1, 0], [2, 0, -(2**63), 0]])
    rows = rtpsynth.to_dicts(data)
    assert [r["lost"] for r in rows] == [-3, 2**63 - 1, -(2**63)]
    assert rows[0]["a"] == 2**64 - 1  # unsigned columns stay unsigned
    arr = rtpsynth.to_numpy(data)
    assert arr.dtype["lost"] == np.dtype("<i8") and arr.dtype["a"] == np.dtype("<u8")
    assert list(arr["lost"]) == [-3, 2**63 - 1, -(2**63)]
    assert int(arr["a"][0]) == 2**64 - 1


def test_empty_server_has_header_only():
    data = packed(2, [])
    assert rtpsynth.to_dicts(data) == []
    assert len(rtpsynth.to_numpy(data)) == 0
    assert rtpsynth.header(data) == (2, 12, 0)


def test_an_unknown_version_is_refused_naming_it_and_the_known_ones():
    for version in (0, 6, 2**64 - 1):
        data = struct.pack("<3Q", version, 3, 0)
        for decode in (rtpsynth.to_dicts, rtpsynth.to_numpy, rtpsynth.header):
            with pytest.raises(ValueError, match=rf"version {version} is unknown.* reads versions 1, 2, 3, 4, 5$"):
                decode(data)
    with pytest.raises(rtpsynth.LayoutError, match="version 7 is unknown"):
        rtpsynth.layout(7)


@pytest.mark.parametrize("data, why", [
    (b"", "too short"),
    (packed(2, [[0] * 12])[:-8], "not whole rows"),
    (packed(2, [[0] * 12], nrows=5), "header says 5 rows of 12 columns, the data holds 1"),
    (packed(2, [[0] * 11], ncols=11), "layout version 2 has 12 columns, the header says 11"),
])
def test_bad_layouts_are_refused(data, why):
    for decode in (rtpsynth.to_dicts, rtpsynth.to_numpy, rtpsynth.header):
        with pytest.raises(rtpsynth.LayoutError, match=why):
            decode(data)


def test_bytes_like_inputs_are_accepted_without_copies():
    data = packed(2, [[3] + [1] * 11])
    for form in (data, bytearray(data), memoryview(data)):
        assert rtpsynth.raw(form) is form
        assert rtpsynth.to_dicts(form)[0]["channel"] == 3
        assert int(rtpsynth.to_numpy(form)["channel"][0]) == 3
