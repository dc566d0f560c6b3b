"""The rtpsynth package's functions against a live rtpmuxserver (two
channels on loopback, see conftest's `echo`): each decodes what the element
publishes, and agrees with the element's stats structure."""

import os
import pydoc
import subprocess
import sys

import numpy as np
import pytest

import rtpsynth


def expected_rows(m):
    """Each channel's counters from the `stats` structure (the slow,
    field-by-field way), as {column: value} in channel order."""
    structure = m.get_property("stats")
    columns = list(m.get_property("stats-columns"))
    rows = []
    for i in range(structure.n_fields()):
        name = structure.nth_field_name(i)
        if name.startswith("channel-"):
            per_channel = structure.get_value(name)
            row = {"channel": int(name[len("channel-"):])}
            row.update({c: per_channel.get_value(c) for c in columns[1:]})
            rows.append(row)
    return sorted(rows, key=lambda r: r["channel"])


def test_layout_of_the_element_is_known_and_names_its_columns(echo):
    packed = echo.m.get_property("stats-packed")
    version = rtpsynth.header(packed).version
    assert version == rtpsynth.LAYOUT_VERSION
    assert rtpsynth.layout(version).names == list(echo.m.get_property("stats-columns"))


def test_raw_gives_the_bytes_of_the_property(echo):
    packed = echo.m.get_property("stats-packed")
    data = rtpsynth.raw(packed)
    assert isinstance(data, bytes)
    assert data == packed.get_data()
    ncols = len(echo.m.get_property("stats-columns"))
    assert len(data) == 8 * ncols * 3  # header and two channels


def test_header_counts_columns_and_channels(echo):
    packed = echo.m.get_property("stats-packed")
    columns = list(echo.m.get_property("stats-columns"))
    assert rtpsynth.header(packed, columns) == (rtpsynth.LAYOUT_VERSION, len(columns), 2)
    h = rtpsynth.header(packed)
    assert (h.version, h.columns, h.rows) == (rtpsynth.LAYOUT_VERSION, len(columns), 2)


def test_to_dicts_matches_the_stats_structure(echo):
    rows = rtpsynth.to_dicts(echo.m.get_property("stats-packed"), list(echo.m.get_property("stats-columns")))
    assert rows == expected_rows(echo.m)
    assert rows[1]["packets-received"] == echo.packets
    assert rows[1]["local-port"] == echo.port
    assert all(type(v) is int for r in rows for v in r.values())


def test_to_numpy_matches_the_stats_structure(echo):
    arr = rtpsynth.to_numpy(echo.m.get_property("stats-packed"), list(echo.m.get_property("stats-columns")))
    want = expected_rows(echo.m)
    assert arr.dtype.names == tuple(want[0])
    # uint64, but the layout's signed columns (packets-lost, ...) int64.
    lay = rtpsynth.layout(rtpsynth.LAYOUT_VERSION)
    assert all(arr.dtype[c.name] == np.dtype("<i8" if c.signed else "<u8") for c in lay.columns)
    assert any(c.signed for c in lay.columns)
    assert [dict(zip(arr.dtype.names, map(int, rec))) for rec in arr] == want
    assert int(arr["octets-sent"][0]) == echo.packets * echo.packet_len


def test_read_decodes_both_property_reads(echo, monkeypatch):
    want = expected_rows(echo.m)
    arr = rtpsynth.read(echo.m)
    assert isinstance(arr, np.ndarray)
    assert list(arr["packets-received"]) == [r["packets-received"] for r in want]
    assert rtpsynth.read(echo.m, as_numpy=False) == want
    # Without numpy, read falls back to the dicts.
    monkeypatch.setitem(sys.modules, "numpy", None)
    assert rtpsynth.read(echo.m) == want


def test_read_checks_an_elements_column_names_once_per_layout_version(echo):
    class Counting:
        """The element's two properties, counting the column reads."""

        def __init__(self, columns):
            self.columns, self.asked = columns, 0

        def get_property(self, name):
            if name == "stats-columns":
                self.asked += 1
                return self.columns
            return echo.m.get_property(name)

    good = Counting(list(echo.m.get_property("stats-columns")))
    want = expected_rows(echo.m)
    assert [rtpsynth.read(good, as_numpy=False) for _ in range(3)] == [want] * 3
    assert good.asked == 1
    # Another element is checked on its own, and a wrong list refused.
    bad = Counting(list(reversed(good.columns)))
    for _ in range(2):
        with pytest.raises(rtpsynth.LayoutError, match="are not those of layout version"):
            rtpsynth.read(bad)
    assert bad.asked == 2


def test_a_stale_or_foreign_column_list_is_refused(echo):
    packed = echo.m.get_property("stats-packed")
    columns = list(echo.m.get_property("stats-columns"))
    with pytest.raises(rtpsynth.LayoutError, match="are not those of layout version"):
        rtpsynth.to_dicts(packed, columns[:-1])
    with pytest.raises(rtpsynth.LayoutError, match="are not those of layout version"):
        rtpsynth.to_numpy(packed, list(reversed(columns)))


def test_the_package_imports_and_decodes_without_numpy(echo):
    # A fresh interpreter in which numpy cannot be imported: the package
    # must not need it to import or to give dicts.
    data = rtpsynth.raw(echo.m.get_property("stats-packed"))
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import rtpsynth\n"
        "rows = rtpsynth.to_dicts(sys.stdin.buffer.read())\n"
        "print([r['packets-received'] for r in rows])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, env=os.environ, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().strip() == str([0, echo.packets])


def test_help_shows_every_function_with_its_docstring():
    text = pydoc.render_doc(rtpsynth, renderer=pydoc.plaintext)
    assert "stats-packed" in text.split("PACKAGE CONTENTS")[0]
    for name in ("raw", "layout", "header", "to_numpy", "to_dicts", "read"):
        doc = getattr(rtpsynth, name).__doc__
        assert doc, name
        assert doc.split("\n")[0].strip() in text, name
