#!/usr/bin/python3
"""Reload without restarts: a file whose buses and devices did not change (only the log
level, the control socket or the metrics address) is applied without touching the
gateway: no new MQTT CONNECT, no client attributes sent again, the bus's connection kept.
A file that changes some devices and buses applies the difference: every other device
keeps its session (no CONNECT, no attributes sent again) and every other bus its
connection or listening socket, a bus whose only change is its devices keeps its
connection; changed devices reconnect, removed ones disconnect, added ones connect.
Nothing queued during an Edge outage is lost across a reload. A file that fails
validation changes nothing and `tbgwctl reload` prints its file:line errors."""
import json
import signal
import time

import harness


class Reload(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.emu = self.emulator(devices=[("meter", "T-meter")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.set(1, "input", 0, 215)
        self.fm.set(1, "holding", 100, 0x4142)

    def text(self, level="info", poll_ms=200):
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; devices = ('
               ' { name = "meter"; unit_id = 1; token = "T-meter"; poll_ms = %d;'
               ' telemetry = ( { key = "t"; table = "input"; address = 0; type = "int16"; } );'
               ' attributes = ( { key = "sn"; table = "holding"; address = 100; type = "string";'
               ' count = 1; } ); } ); }' % (self.fm.port, poll_ms))
        return self.config(self.emu.port, bus).replace('level = "debug"', 'level = "%s"' % level)

    def telemetry_count(self):
        return len(self.emu.messages("meter", "v1/devices/me/telemetry"))

    def more_telemetry(self):
        n = self.telemetry_count()
        self.emu.wait(lambda: self.telemetry_count() >= n + 3, 10, "telemetry after the reload")

    def test_unchanged_devices_keep_their_session(self):
        proc, _, cfg = self.start_tbgw(self.text())
        self.emu.wait_connected("meter")
        self.emu.wait_messages("meter", "v1/devices/me/attributes", 1)
        self.more_telemetry()
        connects = self.emu.connect_count("meter")
        attrs = len(self.emu.messages("meter", "v1/devices/me/attributes"))

        with open(cfg, "w") as f:
            f.write(self.text(level="warning") + '\nmetrics = { listen = "127.0.0.1:%d"; };\n'
                    % harness.free_port())
        r = self.tbgwctl("reload")
        self.assertEqual((r.returncode, r.stdout), (0, "configuration reloaded\n"), r.stderr)
        self.more_telemetry()
        self.assertEqual(self.emu.connect_count("meter"), connects)
        self.assertEqual(len(self.emu.messages("meter", "v1/devices/me/attributes")), attrs)
        self.assertIn("no bus or device changed; every session and port kept", proc.output())

        # A refused file changes nothing either.
        with open(cfg, "a") as f:
            f.write("\nbuses = 3;\n")
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"tbgw\.conf:\d+: ")
        self.more_telemetry()
        self.assertEqual(self.emu.connect_count("meter"), connects)

        # A changed device: the gateway is rebuilt and polling goes on at the new rate.
        with open(cfg, "w") as f:
            f.write(self.text(poll_ms=100))
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.emu.wait(lambda: self.emu.connect_count("meter") > connects, 10, "a new session")
        self.more_telemetry()
        self.stop_tbgw(proc)



def device(name, unit, address=0, extra=""):
    return ('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = 200; %s'
            ' telemetry = ( { key = "t"; table = "input"; address = %d; type = "int16"; } ); }'
            % (name, unit, name, extra, address))


METER_SN = (' attributes = ( { key = "sn"; table = "holding"; address = 100; type = "string";'
            ' count = 1; } );')


class Difference(harness.TestCase):
    """Two Modbus TCP buses: "plc" (meter with an attribute, pump) and "line" (valve)."""

    NAMES = ("meter", "pump", "valve", "fan")

    def setUp(self):
        super().setUp()
        self.emu = self.emulator(devices=[(n, "T-" + n) for n in self.NAMES])
        self.plc = self.fake_modbus("--tcp", "0", name="plc")
        self.line = self.fake_modbus("--tcp", "0", name="line")
        for fm in (self.plc, self.line):
            for unit in (1, 2, 3):
                fm.set(unit, "input", 0, 10 * unit)
                fm.set(unit, "input", 4, 10 * unit + 4)
        self.plc.set(1, "holding", 100, 0x4142)

    def text(self, plc_devices, line_devices=None, edge=""):
        buses = ['{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d;'
                 ' devices = ( %s ); }' % (self.plc.port, ", ".join(plc_devices))]
        if line_devices:
            buses.append('{ name = "line"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d;'
                         ' devices = ( %s ); }' % (self.line.port, ", ".join(line_devices)))
        return self.config(self.emu.port, ", ".join(buses), edge=edge)

    def connections(self, fm):
        return int(fm.cmd("connections").split()[1])

    def connects(self):
        return {n: self.emu.connect_count(n) for n in self.NAMES}

    def attribute_messages(self, name):
        return len(self.emu.messages(name, "v1/devices/me/attributes"))

    def more_telemetry(self, *names):
        for name in names:
            n = len(self.emu.telemetry(name))
            self.emu.wait(lambda: len(self.emu.telemetry(name)) >= n + 3, 10,
                          "telemetry of %s" % name)

    def reload(self, cfg, text):
        with open(cfg, "w") as f:
            f.write(text)
        r = self.tbgwctl("reload")
        self.assertEqual((r.returncode, r.stdout), (0, "configuration reloaded\n"), r.stderr)

    def test_reload_applies_the_difference(self):
        first = [device("meter", 1, extra=METER_SN), device("pump", 2)]
        proc, _, cfg = self.start_tbgw(self.text(first, [device("valve", 1)]))
        for n in ("meter", "pump", "valve"):
            self.emu.wait_connected(n)
        self.emu.wait_messages("meter", "v1/devices/me/attributes", 1)
        self.more_telemetry("meter", "pump", "valve")
        before, attrs = self.connects(), self.attribute_messages("meter")
        links = (self.connections(self.plc), self.connections(self.line))
        self.assertEqual(links, (1, 1))

        # The pump reads another register: it alone reconnects. Its bus keeps its
        # connection (only its devices changed); the other bus is not touched at all.
        self.reload(cfg, self.text([device("meter", 1, extra=METER_SN), device("pump", 2, 4)],
                                   [device("valve", 1)]))
        self.emu.wait(lambda: self.emu.connect_count("pump") > before["pump"], 10,
                      "the changed device's new session")
        self.emu.wait(lambda: [v for _, k, v in self.emu.telemetry("pump") if v == 24], 10,
                      "the pump's new register")
        self.more_telemetry("meter", "valve")
        after = self.connects()
        self.assertEqual((after["meter"], after["valve"]), (before["meter"], before["valve"]))
        self.assertEqual(self.attribute_messages("meter"), attrs)
        self.assertEqual((self.connections(self.plc), self.connections(self.line)), links)
        self.assertIn("reload: device 'pump': restart", proc.output())

        # The valve goes, with its bus; a fan joins the plc bus: the valve's session closes,
        # the fan connects; the meter and the pump keep theirs, the plc bus its connection.
        before = self.connects()
        self.reload(cfg, self.text([device("meter", 1, extra=METER_SN), device("pump", 2, 4),
                                    device("fan", 3)]))
        self.emu.wait(lambda: not self.emu.connected("valve"), 10, "the valve's session to close")
        self.emu.wait_connected("fan")
        self.more_telemetry("meter", "pump", "fan")
        after = self.connects()
        self.assertEqual((after["meter"], after["pump"], after["valve"]),
                         (before["meter"], before["pump"], before["valve"]))
        self.assertEqual(self.attribute_messages("meter"), attrs)
        self.assertEqual(self.connections(self.plc), links[0])
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual([d["name"] for d in st["devices"]], ["meter", "pump", "fan"])
        self.assertEqual([d["edge"] for d in st["devices"]], ["connected"] * 3)
        # The counters go on: the meter's polls include those before the reloads.
        self.assertGreater(st["devices"][0]["polls"], st["devices"][2]["polls"])

        # A refused file changes nothing, and says where.
        with open(cfg, "a") as f:
            f.write("\nbuses = 3;\n")
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"tbgw\.conf:\d+: ")
        self.more_telemetry("meter", "pump", "fan")
        self.assertEqual(self.connects(), after)
        self.assertEqual(self.connections(self.plc), links[0])
        self.stop_tbgw(proc)

    def test_a_write_during_the_hand_over_reaches_the_hardware(self):
        writes = ' writes = ( { key = "sp"; table = "holding"; address = 20; type = "uint16"; } );'
        meter = device("meter", 1, extra=writes)
        proc, _, cfg = self.start_tbgw(self.text([meter, device("pump", 2)]))
        self.emu.wait(lambda: self.emu.messages("meter", "v1/devices/me/attributes/request/"), 10,
                      "the attribute sync")
        # Unacknowledged batches make the old uplink wait for them while it stops: a push
        # then reaches it after the buses have stopped.
        self.emu.hold_puback("meter")
        time.sleep(1)
        with open(cfg, "w") as f:
            f.write(self.text([meter, device("pump", 2, 4)]))
        proc.kill(signal.SIGHUP)
        harness.wait_until(lambda: "reload: device 'pump': restart" in proc.output(), 10,
                           "the reload")
        time.sleep(0.1)
        self.emu.set_shared("meter", {"sp": 77})
        harness.wait_until(lambda: "configuration reloaded" in proc.output(), 10, "the reload")
        self.emu.hold_puback("meter", False)
        harness.wait_until(lambda: self.plc.get(1, "holding", 20) == [77], 10, "the write")
        self.assertEqual(self.emu.connect_count("meter"), 1)
        self.assertNotIn("not written", proc.output())
        self.stop_tbgw(proc)

    def test_edge_change_restarts_every_session_but_keeps_the_bus(self):
        proc, _, cfg = self.start_tbgw(self.text([device("meter", 1), device("pump", 2)]))
        for n in ("meter", "pump"):
            self.emu.wait_connected(n)
        before = self.connects()
        self.reload(cfg, self.text([device("meter", 1), device("pump", 2)], edge="keepalive_s = 30;"))
        for n in ("meter", "pump"):
            self.emu.wait(lambda: self.emu.connect_count(n) > before[n], 10, "a new session of " + n)
        self.more_telemetry("meter", "pump")
        self.assertEqual(self.connections(self.plc), 1)
        self.stop_tbgw(proc)

    def test_outage_backlog_survives_a_reload(self):
        proc, _, cfg = self.start_tbgw(self.text([device("meter", 1), device("pump", 2)]))
        self.emu.wait(lambda: len(self.emu.telemetry("meter")) > 3, 10, "telemetry")
        start = self.emu.telemetry("meter")[-1][0]
        self.emu.refuse_tcp(True)
        self.emu.drop_all()
        time.sleep(2)
        # Polling pauses while the reload hands over (not data lost: nothing was read).
        pause = [int(time.time() * 1000) - 200]
        self.reload(cfg, self.text([device("meter", 1), device("pump", 2, 4)]))
        pause.append(int(time.time() * 1000))
        time.sleep(1)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertGreater(st["gateway"]["spool"]["batches"], 10)
        self.emu.refuse_tcp(False)
        end = int(time.time() * 1000) - 500
        self.emu.wait(lambda: self.emu.telemetry("meter")[-1][0] > end + 500, 30, "the backlog")
        stamps = sorted(set(ts for ts, _, _ in self.emu.telemetry("meter")))
        window = [t for t in stamps if start <= t <= end]
        gaps = [(b - a, a) for a, b in zip(window, window[1:])
                if b - a > 200 * 2.5 and not pause[0] <= a <= pause[1]]
        self.assertEqual(gaps, [], "samples missing")
        self.assertGreater(len(window), (end - start) / 200 * 0.6)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual(st["gateway"]["totals"]["values_lost"], 0)
        # The bus's connection was kept through it all.
        self.assertEqual(self.connections(self.plc), 1)
        self.stop_tbgw(proc)

    def test_listening_bus_keeps_its_socket_and_connection(self):
        port = harness.free_port()
        bus = ('{ name = "dtu"; driver = "modbus-rtu-tcp"; listen = { bind = "127.0.0.1"; port = %d; }; '
               'timeout_ms = 200; devices = ( %s ); }')
        proc, _, cfg = self.start_tbgw(self.config(self.emu.port, bus % (port, device("meter", 1))))
        dtu = self.fake_modbus("--rtu-tcp-dial", str(port), "--units", "1,2", name="dtu")
        dtu.set(1, "input", 0, 7)
        dtu.set(2, "input", 0, 8)
        self.emu.wait(lambda: [v for _, k, v in self.emu.telemetry("meter") if v == 7], 10)
        connects = self.emu.connect_count("meter")
        # A device joins the bus: the DTU's connection is polled on, nobody re-dials.
        with open(cfg, "w") as f:
            f.write(self.config(self.emu.port, bus % (port, device("meter", 1) + ", " +
                                                      device("pump", 2))))
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.emu.wait(lambda: [v for _, k, v in self.emu.telemetry("pump") if v == 8], 10,
                      "the added device's values over the same connection")
        self.more_telemetry("meter")
        self.assertEqual(self.connections(dtu), 1)
        self.assertEqual(self.emu.connect_count("meter"), connects)
        # Another timeout: applied to the same connection.
        with open(cfg, "w") as f:
            f.write(self.config(self.emu.port, (bus % (port, device("meter", 1) + ", " +
                                                       device("pump", 2))).replace(
                "timeout_ms = 200;", "timeout_ms = 300;")))
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("reload: bus 'dtu': restart (its port or connection is kept)", proc.output())
        dtu.set(2, "input", 0, 9)
        self.emu.wait(lambda: [v for _, k, v in self.emu.telemetry("pump") if v == 9], 10,
                      "polling after the new timeout")
        self.assertEqual(self.connections(dtu), 1)
        self.assertEqual(self.emu.connect_count("meter"), connects)
        self.assertNotIn("cannot listen", proc.output())
        self.stop_tbgw(proc)


if __name__ == "__main__":
    harness.main()
