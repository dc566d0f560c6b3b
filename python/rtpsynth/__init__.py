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

Import it from a source tree with ``PYTHONPATH=python``; ``meson install``
installs it into the system Python's site-packages beside the plugin.
"""

# stats.__all__ is the one list of the public names.
from .stats import (
    LAYOUT_VERSION,
    __all__,
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
