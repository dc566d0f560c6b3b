"""Decode ``rtpmuxserver``'s bulk statistics (``stats-packed``) in one call.

``rtpmuxserver`` publishes the counters of all its channels in one property
read: ``stats-packed`` (a ``GLib.Bytes``) and ``stats-columns`` (the column
names). The bytes are rows of little-endian 64-bit words, all rows as wide as
there are columns:

* row 0 is a header: ``[layout version, number of columns, number of channel
  rows, 0, ...]``;
* each following row is one channel: ``channel`` (the pad index) first, then
  its counters.

The layout version says which columns there are, in which order, and which
of them are signed (stored as two's complement in the ``u64`` word, decoded
as ``int64``). :data:`LAYOUTS` holds every version the elements produce; a
new version is one more entry there. Bytes of a version not in it are
refused with :class:`LayoutError`, never guessed at.

Nothing here walks a GstStructure, and nothing but :func:`to_numpy` needs
numpy.
"""

from __future__ import annotations

import functools
import struct
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence, Union

if TYPE_CHECKING:
    import numpy

__all__ = [
    "Column",
    "Layout",
    "LAYOUTS",
    "LAYOUT_VERSION",
    "LayoutError",
    "Header",
    "raw",
    "layout",
    "header",
    "to_numpy",
    "to_dicts",
    "read",
]

BytesLike = Union[bytes, bytearray, memoryview]

#: What the decoders accept: a ``GLib.Bytes`` (anything with ``get_data()``,
#: as ``stats-packed`` reads) or the bytes themselves.
Packed = Union[BytesLike, Any]

# Bytes per column: every value is one 64-bit word.
_WORD = 8


class LayoutError(ValueError):
    """The bytes do not follow a layout this package knows, or disagree with
    their own header or with the column names given."""


@dataclass(frozen=True)
class Column:
    """One column of a layout: its name (as ``stats-columns`` gives it) and
    whether the word holds a signed (two's complement) or unsigned value."""

    name: str
    signed: bool = False

    @property
    def struct_code(self) -> str:
        """The column's :mod:`struct` format character."""
        return "q" if self.signed else "Q"

    @property
    def numpy_type(self) -> str:
        """The column's little-endian numpy type string."""
        return "<i8" if self.signed else "<u8"


@dataclass(frozen=True)
class Layout:
    """One version of the ``stats-packed`` layout: its columns, in order."""

    version: int
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """The column names, as ``stats-columns`` lists them."""
        return [c.name for c in self.columns]

    # Built once per layout, not per decode: building the numpy dtype took
    # about as long (a few microseconds) as the rest of decoding a thousand
    # channels.
    @functools.cached_property
    def row_format(self) -> struct.Struct:
        """A :class:`struct.Struct` that unpacks one row."""
        return struct.Struct("<" + "".join(c.struct_code for c in self.columns))

    @functools.cached_property
    def numpy_dtype(self) -> numpy.dtype:
        """A numpy structured dtype, one field per column."""
        import numpy as np

        return np.dtype([(c.name, c.numpy_type) for c in self.columns])


def _unsigned(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n) for n in names)


_V1_COLUMNS = _unsigned(
    "channel",
    "packets-received",
    "octets-received",
    "packets-sent",
    "octets-sent",
    "dropped-queue-full",
    "dropped-foreign-source",
    "dropped-not-rtp",
    "send-errors",
    "latched",
    "local-port",
)

# Version 2 counts the datagrams the kernel dropped on a full socket, after
# dropped-not-rtp.
_V2_COLUMNS = _V1_COLUMNS[:8] + _unsigned("dropped-kernel") + _V1_COLUMNS[8:]

# Version 3 adds each channel's RTP session after local-port: RFC 3550
# receive and send statistics, RTCP counts by fault, what the peer reports,
# RTT and MOS. packets-lost and remote-packets-lost are signed (duplicates
# make them negative); unknown values are 2**64 - 1 (signed: -2**63).
_V3_COLUMNS = _V2_COLUMNS + (
    Column("local-ssrc"),
    Column("remote-ssrc"),
    Column("rtp-packets-received"),
    Column("rtp-payload-octets-received"),
    Column("packets-expected"),
    Column("packets-lost", signed=True),
    Column("fraction-lost"),
    Column("jitter"),
    Column("jitter-us"),
    Column("max-jitter-us"),
    Column("rtp-packets-sent"),
    Column("rtp-payload-octets-sent"),
    Column("rtcp-sent"),
    Column("rtcp-received"),
    Column("rtcp-dropped"),
    Column("rtcp-dropped-too-short"),
    Column("rtcp-dropped-bad-version"),
    Column("rtcp-dropped-length-overrun"),
    Column("rtcp-dropped-report-overrun"),
    Column("rtcp-dropped-bad-padding"),
    Column("rtcp-dropped-sdes-overrun"),
    Column("rtcp-dropped-bye-overrun"),
    Column("rtcp-not-report-first"),
    Column("sr-received"),
    Column("rr-received"),
    Column("bye-received"),
    Column("remote-fraction-lost"),
    Column("remote-packets-lost", signed=True),
    Column("remote-jitter-us"),
    Column("rtt-us"),
    Column("mos"),
)

# Version 4 adds the relay counters after local-port, before the session.
_V4_COLUMNS = _V2_COLUMNS + _unsigned("relayed", "not-relayed") + _V3_COLUMNS[len(_V2_COLUMNS) :]

# Version 5 adds relayed-offloaded (what the kernel forwarded, relay-offload)
# after not-relayed.
_V5_COLUMNS = _V4_COLUMNS[: len(_V2_COLUMNS) + 2] + _unsigned("relayed-offloaded") + _V4_COLUMNS[len(_V2_COLUMNS) + 2 :]

#: Every layout version the elements produce, by version number.
LAYOUTS: Mapping[int, Layout] = {
    1: Layout(1, _V1_COLUMNS),
    2: Layout(2, _V2_COLUMNS),
    3: Layout(3, _V3_COLUMNS),
    4: Layout(4, _V4_COLUMNS),
    5: Layout(5, _V5_COLUMNS),
}

#: The newest layout version this package reads.
LAYOUT_VERSION: int = max(LAYOUTS)


class Header(NamedTuple):
    """The header row of ``stats-packed``."""

    version: int
    columns: int
    rows: int


def raw(packed: Packed) -> BytesLike:
    """The bytes of a ``GLib.Bytes`` (an empty one gives ``b""``); bytes,
    ``bytearray`` and ``memoryview`` as they are, not copied."""
    if hasattr(packed, "get_data"):
        packed = packed.get_data()
    if packed is None:
        return b""
    return packed


def layout(version: int) -> Layout:
    """The :class:`Layout` of ``version``.

    Raises :class:`LayoutError` (a ``ValueError``) naming the version and the
    versions this package knows when it is not one of them.
    """
    try:
        return LAYOUTS[version]
    except KeyError:
        known = ", ".join(str(v) for v in sorted(LAYOUTS))
        raise LayoutError(
            f"stats-packed layout version {version} is unknown: this rtpsynth package reads versions {known}"
        ) from None


def _decode_header(data: BytesLike, columns: Sequence[str] | None) -> tuple[Header, Layout]:
    """The header of ``data`` and its layout, checked against the data's
    length and against ``columns`` when given."""
    if len(data) < 3 * _WORD:
        raise LayoutError(f"{len(data)} bytes are too short for a stats-packed header")
    head = Header(*struct.unpack_from("<3Q", data))
    lay = layout(head.version)
    ncols = len(lay.columns)
    if head.columns != ncols:
        raise LayoutError(f"layout version {head.version} has {ncols} columns, the header says {head.columns}")
    if len(data) % (_WORD * ncols):
        raise LayoutError(f"{len(data)} bytes are not whole rows of {ncols} u64 columns")
    if len(data) != _WORD * ncols * (head.rows + 1):
        raise LayoutError(
            f"header says {head.rows} rows of {ncols} columns, the data holds {len(data) // (_WORD * ncols) - 1}"
        )
    if columns is not None and list(columns) != lay.names:
        raise LayoutError(f"columns {list(columns)} are not those of layout version {head.version}: {lay.names}")
    return head, lay


def header(packed: Packed, columns: Sequence[str] | None = None) -> Header:
    """The checked header row: ``(version, columns, rows)``.

    ``columns``, when given (``stats-columns``), must be the names of the
    version's columns. Raises :class:`LayoutError` when the version is
    unknown or the bytes, header and names disagree.
    """
    return _decode_header(raw(packed), columns)[0]


def to_numpy(packed: Packed, columns: Sequence[str] | None = None) -> numpy.ndarray:
    """The channel rows as a numpy structured array: one record per channel,
    one field per column (``uint64``, or ``int64`` for signed columns).

    The array is a view on the bytes, not a copy (read-only for ``bytes``
    and ``GLib.Bytes``). ``columns`` as for :func:`header`.
    """
    import numpy as np

    data = raw(packed)
    _, lay = _decode_header(data, columns)
    return np.frombuffer(data, dtype=lay.numpy_dtype)[1:]


def to_dicts(packed: Packed, columns: Sequence[str] | None = None) -> list[dict[str, int]]:
    """The channel rows as a list of ``{column name: int}``, one per
    channel, with the standard library only. ``columns`` as for
    :func:`header`."""
    data = raw(packed)
    _, lay = _decode_header(data, columns)
    row = lay.row_format
    names = lay.names
    return [dict(zip(names, values)) for values in row.iter_unpack(memoryview(data)[row.size :])]


#: Per element, the layout version whose names its ``stats-columns`` were
#: checked against: an element's names never change, so :func:`read` asks
#: for them once per element and version instead of at every poll (a list of
#: some forty strings cost a tenth of a poll of 1,000 channels).
_checked: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def read(element: Any, as_numpy: bool = True) -> numpy.ndarray | list[dict[str, int]]:
    """Read an element's ``stats-packed`` and decode it: with
    :func:`to_numpy` when ``as_numpy`` and numpy imports, else with
    :func:`to_dicts`. The element's ``stats-columns`` are checked against
    the layout the first time a version is read from it."""
    data = raw(element.get_property("stats-packed"))
    version = struct.unpack_from("<Q", data)[0] if len(data) >= _WORD else None
    try:
        checked = _checked.get(element) == version
    except TypeError:  # an object that takes no weak reference
        checked = False
    columns = None if checked else list(element.get_property("stats-columns"))
    if as_numpy:
        try:
            rows = to_numpy(data, columns)
        except ImportError:
            rows = to_dicts(data, columns)
    else:
        rows = to_dicts(data, columns)
    if not checked and version is not None:
        try:
            _checked[element] = version
        except TypeError:
            pass
    return rows
