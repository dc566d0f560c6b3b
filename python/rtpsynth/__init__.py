"""rtpsynth: Python helpers for the ``rtpsynth`` GStreamer plugin.

The plugin's elements are used through PyGObject like any other
(``Gst.ElementFactory.make("rtpmuxserver")``); this package decodes what
they publish for applications that watch many channels at once:

``rtpmuxserver``'s ``stats-packed`` property holds every open channel's
counters in one ``GLib.Bytes`` (one property read for all channels), in a
versioned binary layout. :func:`read` reads and decodes it; :func:`to_numpy`
and :func:`to_dicts` decode bytes already read::

    import rtpsynth

    table = rtpsynth.read(mux)                  # numpy structured array
    table["packets-received"].sum()
    rows = rtpsynth.to_dicts(mux.get_property("stats-packed"))   # no numpy
    rows[0]["channel"], rows[0]["dropped-queue-full"]

Every layout version the elements produce is in :data:`LAYOUTS`; bytes of
any other version raise :class:`LayoutError`, a ``ValueError``.

``rtpmuxserver``'s ``src_all`` pad pushes one buffer per worker round with
the datagrams of every channel that has no ``src_N``; :func:`batch_records`
(numpy, one call) and :func:`batch_packets` (no numpy) decode it::

    ok, info = sample.get_buffer().map(Gst.MapFlags.READ)
    for channel, (host, port), datagram in rtpsynth.batch_packets(info.data):
        ...

Import it from a source tree with ``PYTHONPATH=python``; ``meson install``
installs it into the system Python's site-packages beside the plugin.
"""

# stats.__all__ and batch.__all__ are the one lists of the public names.
from . import batch as _batch
from . import stats as _stats
from .batch import BATCH_LAYOUT_VERSION, BATCH_RECORD_FIELDS, batch_packets, batch_records
from .stats import (
    LAYOUT_VERSION,
    LAYOUTS,
    Column,
    Header,
    Layout,
    LayoutError,
    header,
    layout,
    raw,
    read,
    to_dicts,
    to_numpy,
)

__all__ = _stats.__all__ + _batch.__all__
