"""rtpmuxserver through PyGObject: two channels on loopback, and the bulk
statistics (stats-packed) agreeing with the stats structure and the traffic."""

import rtpsynth


def test_bulk_stats_agree_with_structure_and_traffic(echo):
    m, packets, packet_len = echo.m, echo.packets, echo.packet_len
    packed = m.get_property("stats-packed")
    columns = list(m.get_property("stats-columns"))
    structure = m.get_property("stats")

    rows = rtpsynth.to_dicts(packed, columns)
    assert [r["channel"] for r in rows] == [0, 1]
    ch0, ch1 = rows
    assert ch0["packets-sent"] == packets and ch0["octets-sent"] == packets * packet_len
    assert ch1["packets-received"] == packets and ch1["octets-received"] == packets * packet_len
    assert ch1["local-port"] == echo.port
    assert ch0["dropped-queue-full"] == ch0["send-errors"] == 0

    # The bulk rows hold exactly what the readable structure holds.
    for row in rows:
        per_channel = structure.get_value(f"channel-{row['channel']}")
        for name in columns[1:]:
            assert per_channel.get_value(name) == row[name], (row["channel"], name)

    arr = rtpsynth.to_numpy(packed, columns)
    assert int(arr["packets-received"].sum()) == structure.get_value("packets-received") == packets
