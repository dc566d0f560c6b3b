"""Decode the buffers of ``rtpmuxserver``'s ``src_all`` pad.

``src_all`` carries, one buffer per worker round, the datagrams every
channel without a ``src_N`` received (``docs/rtpmuxserver.md``). Its caps
are ``application/x-rtpmuxserver-batch, layout=(int)1``; a buffer is,
little-endian:

* a 16-byte header: ``[layout version, N, record size (32), 0]`` as ``u32``;
* N records of 32 bytes: ``channel`` (u32), ``offset`` of the datagram from
  the start of the buffer (u32), ``length`` (u32), source ``port`` (u16),
  address ``family`` (u8, 4 or 6), 0 (u8), source ``address`` (16 bytes,
  network order, IPv4 in the first 4);
* the datagrams, back to back.

:func:`batch_records` gives the records as one numpy structured array (one
``numpy.frombuffer`` call, however many datagrams); :func:`batch_packets`
gives ``(channel, (host, port), datagram)`` tuples without numpy. Both
check the header and every record's bounds, and raise
:class:`~rtpsynth.stats.LayoutError` on bytes of another layout.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING, List, Tuple

from .stats import LayoutError, Packed, raw

if TYPE_CHECKING:
    import numpy

__all__ = ["BATCH_LAYOUT_VERSION", "BATCH_RECORD_FIELDS", "batch_records", "batch_packets"]

BATCH_LAYOUT_VERSION = 1
_HEADER = struct.Struct("<4I")
_RECORD = struct.Struct("<3IHBx16s")

#: The record's fields as numpy (name, type, shape) entries.
BATCH_RECORD_FIELDS = [
    ("channel", "<u4"),
    ("offset", "<u4"),
    ("length", "<u4"),
    ("port", "<u2"),
    ("family", "u1"),
    ("reserved", "u1"),
    ("address", "u1", (16,)),
]


def _header(data: memoryview) -> int:
    """The record count, once the header and the index fit in ``data``."""
    if len(data) < _HEADER.size:
        raise LayoutError(f"batch of {len(data)} bytes is shorter than its header")
    version, count, size, _ = _HEADER.unpack_from(data)
    if version != BATCH_LAYOUT_VERSION or size != _RECORD.size:
        raise LayoutError(
            f"batch layout {version} with {size}-byte records; this package reads layout "
            f"{BATCH_LAYOUT_VERSION} with {_RECORD.size}-byte records"
        )
    if len(data) < _HEADER.size + count * _RECORD.size:
        raise LayoutError(f"batch of {len(data)} bytes is shorter than its {count} records")
    return count


def batch_records(buffer: Packed) -> "numpy.ndarray":
    """The records of a ``src_all`` buffer as a numpy structured array with
    the fields of :data:`BATCH_RECORD_FIELDS`.

    The array views the bytes given, not a copy: read it while the buffer
    is mapped (or ``.copy()`` it)."""
    import numpy

    data = memoryview(raw(buffer))
    count = _header(data)
    records = numpy.frombuffer(data, dtype=numpy.dtype(BATCH_RECORD_FIELDS), count=count, offset=_HEADER.size)
    ends = records["offset"].astype(numpy.uint64) + records["length"]
    bad = (ends > len(data)) | ~numpy.isin(records["family"], (4, 6))
    if bad.any():
        raise LayoutError(f"batch record {int(numpy.argmax(bad))} is malformed")
    return records


def batch_packets(buffer: Packed) -> List[Tuple[int, Tuple[str, int], bytes]]:
    """Every datagram of a ``src_all`` buffer as ``(channel, (host, port),
    datagram)``, in the buffer's order."""
    data = memoryview(raw(buffer))
    count = _header(data)
    out = []
    for i in range(count):
        channel, offset, length, port, family, address = _RECORD.unpack_from(data, _HEADER.size + i * _RECORD.size)
        if offset + length > len(data) or family not in (4, 6):
            raise LayoutError(f"batch record {i} is malformed")
        host = ipaddress.IPv4Address(address[:4]) if family == 4 else ipaddress.IPv6Address(address)
        out.append((channel, (str(host), port), bytes(data[offset:offset + length])))
    return out
