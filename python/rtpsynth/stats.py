"""Decode the bulk statistics of gst-rtpsynth elements in one call.

``rtpmuxserver`` publishes the counters of all its channels in one property
read: ``stats-packed`` (a ``GLib.Bytes``) and ``stats-columns`` (the column
names). The bytes are rows of little-endian unsigned 64-bit integers, all rows
as wide as ``stats-columns`` is long:

* row 0 is a header: ``[layout version, number of columns, number of channel
  rows, 0, ...]``;
* each following row is one channel: ``channel`` (the pad index) first, then
  the counters named by ``stats-columns[1:]``.

This module turns that into a numpy structured array (one field per column)
or, without numpy, into a list of dicts. Nothing here walks a GstStructure.
"""

import struct
import sys

LAYOUT_VERSION = 2

__all__ = ["LAYOUT_VERSION", "LayoutError", "raw", "header", "to_numpy", "to_dicts", "read"]


class LayoutError(ValueError):
    """The bytes do not follow the layout this module knows."""


def raw(packed):
    """The bytes of a ``GLib.Bytes``, ``bytes``, ``bytearray`` or ``memoryview``."""
    if hasattr(packed, "get_data"):
        packed = packed.get_data()
    if packed is None:
        return b""
    return packed


def header(packed, columns):
    """``(version, ncols, nrows)`` from the header row, checked against ``columns``."""
    data = raw(packed)
    ncols = len(columns)
    if ncols < 3 or len(data) < 8 * ncols or len(data) % (8 * ncols):
        raise LayoutError(f"{len(data)} bytes are not whole rows of {ncols} u64 columns")
    version, cols, rows = struct.unpack_from("<3Q", data)
    if version != LAYOUT_VERSION:
        raise LayoutError(f"stats-packed layout version {version}, this module reads {LAYOUT_VERSION}")
    if cols != ncols or len(data) != 8 * ncols * (rows + 1):
        raise LayoutError(f"header says {cols} columns x {rows} rows, got {ncols} names and {len(data)} bytes")
    return version, cols, rows


def to_numpy(packed, columns):
    """A numpy structured array, one record per channel, one uint64 field per column."""
    import numpy as np

    data = raw(packed)
    header(data, columns)
    dtype = np.dtype([(name, "<u8") for name in columns])
    return np.frombuffer(data, dtype=dtype)[1:]


def to_dicts(packed, columns):
    """A list of ``{column: value}`` per channel, with the standard library only."""
    data = raw(packed)
    _, ncols, nrows = header(data, columns)
    words = memoryview(data).cast("Q") if sys.byteorder == "little" else struct.unpack(f"<{len(data) // 8}Q", data)
    return [dict(zip(columns, words[(r + 1) * ncols:(r + 2) * ncols])) for r in range(nrows)]


def read(element, as_numpy=True):
    """Read an element's ``stats-packed`` and ``stats-columns`` and decode them."""
    packed = element.get_property("stats-packed")
    columns = list(element.get_property("stats-columns"))
    if as_numpy:
        try:
            return to_numpy(packed, columns)
        except ImportError:
            pass
    return to_dicts(packed, columns)
