#!/usr/bin/env python3
"""Prints a markdown table of an element's own properties (name, type,
default, flags, description), read from the plugin itself, so the README's
tables are what gst-inspect-1.0 shows. Usage: props-md.py ELEMENT..."""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GObject, Gst  # noqa: E402

Gst.init(None)
BASE = {"name", "parent"}


def fmt_default(spec):
    if GObject.type_is_a(spec.value_type, GObject.TYPE_BOXED):
        return "—"
    v = spec.default_value
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "unset"
    if hasattr(v, "value_nick"):
        return v.value_nick
    return str(v)


def fmt_type(spec):
    t = GObject.type_name(spec.value_type)
    rng = ""
    if hasattr(spec, "minimum") and hasattr(spec, "maximum"):
        rng = f" {spec.minimum}–{spec.maximum}"
    return {"gint": "int", "guint": "uint", "gint64": "int64", "guint64": "uint64",
            "gboolean": "bool", "gchararray": "string"}.get(t, t) + rng


for name in sys.argv[1:]:
    el = Gst.ElementFactory.make(name, None)
    if el is None:
        sys.exit(f"no element {name}: is GST_PLUGIN_PATH set?")
    own = [p for p in el.list_properties() if p.owner_type == type(el).__gtype__ and p.name not in BASE]
    print(f"| `{name}` property | type | default | description |")
    print("|---|---|---|---|")
    for p in own:
        flags = []
        if not p.flags & GObject.ParamFlags.WRITABLE:
            flags.append("read-only")
        if p.flags & Gst.PARAM_MUTABLE_PLAYING:
            flags.append("changeable while PLAYING")
        note = f" ({', '.join(flags)})" if flags else ""
        blurb = p.blurb.replace("|", "\\|").replace("\n", " ")
        print(f"| `{p.name}` | {fmt_type(p)} | {fmt_default(p)} | {blurb}{note} |")
    print()
