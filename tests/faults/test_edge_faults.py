#!/usr/bin/python3
"""Faults of the Edge that the integration tests do not stage with tbgw itself: PUBACKs
withheld (a live connection that acknowledges nothing), a half-open connection (the peer
stops reading and writing and never closes: a dead NAT entry, a pulled cable), and a
connection dropped while batches are in flight. (Refusals, CONNACK errors and plain drops
are in tests/integration/test_uplink.py and test_spool.py.)

Each time: the data waits in the spool and arrives complete and in order afterwards, the
fault and its end are logged once, and SIGTERM still stops tbgw promptly with exit 0."""
import time

import faultlib
from faultlib import harness, SLOW

KEEPALIVE_S = 10  # the least edge.keepalive_s takes
WINDOW = 4


class EdgeFaults(faultlib.FaultCase):
    def setUp(self):
        super().setUp()
        self.emu = self.emulator(devices=[("a", "T-a"), ("b", "T-b")])
        self.fm = self.fake_modbus("--tcp", "0")
        bus = self.tcp_bus(self.fm, [("a", 1), ("b", 2)], poll_ms=50, timeout_ms=1000)
        self.cfg = self.config(self.emu.port, bus, edge="keepalive_s = %d;" % KEEPALIVE_S)
        self.proc, _, _ = self.start_tbgw(self.cfg)
        self.emu.wait(lambda: len(self.stamps(self.emu, "a")) > 3 and
                      len(self.stamps(self.emu, "b")) > 3, 10)

    def telemetry_messages(self, device):
        return len(self.emu.messages(device, "v1/devices/me/telemetry"))

    def backlog(self, device):
        return [d for d in self.status()["devices"] if d["name"] == device][0]["spool_backlog"]

    def all_delivered(self):
        """Stop production; every sample read reaches the Edge, in order."""
        self.assert_delivered(self.stop_production([self.fm]), ("a", "b"), timeout=40,
                              in_order=True)

    def test_withheld_pubacks(self):
        emu = self.emu
        emu.hold_puback("a", True)
        n = self.telemetry_messages("a")
        self.wait_log("the edge has acknowledged nothing", timeout=KEEPALIVE_S + 10)
        # The window is full: nothing more is sent, the rest waits in the spool, and the
        # other device is not held up.
        sent = self.telemetry_messages("a") - n
        self.assertLessEqual(sent, WINDOW)
        harness.wait_until(lambda: self.backlog("a") > 20, 10, "a backlog")
        self.assertEqual(self.telemetry_messages("a") - n, sent)
        nb = len(self.stamps(emu, "b"))
        emu.wait(lambda: len(self.stamps(emu, "b")) > nb + 10, 10, "device b")
        # The connection itself is fine (PINGREQ is answered): it is not dropped.
        time.sleep(KEEPALIVE_S * 1.5)
        self.assertEqual(emu.connect_count("a"), 1)
        emu.hold_puback("a", False)
        self.wait_log("the edge acknowledges again")
        self.all_delivered()
        self.assert_logged("the edge has acknowledged nothing")
        self.assert_logged("the edge acknowledges again")
        self.assertNotIn("connection to the edge lost", self.out())
        self.stop_clean()

    def test_half_open_connection(self):
        emu = self.emu
        emu.stall("a", True)
        # Keepalive finds the dead peer: PINGREQ after one interval, no PINGRESP within
        # another, then the reconnect (a new connection is not stalled).
        t0 = time.monotonic()
        self.wait_log("device 'a': connection to the edge lost", timeout=4 * KEEPALIVE_S + 10)
        self.assertLess(time.monotonic() - t0, (3 * KEEPALIVE_S + 3) * SLOW)
        emu.wait(lambda: emu.connect_count("a") >= 2, 20, "the reconnect")
        self.wait_log("device 'a': connected to the edge")
        self.all_delivered()
        self.assert_logged("device 'a': connection to the edge lost")
        self.assert_logged("device 'a': connected to the edge")
        self.assertNotIn("device 'b': connection to the edge lost", self.out())
        self.stop_clean()

    def test_drop_with_batches_in_flight(self):
        emu = self.emu
        emu.hold_puback("a", True)
        harness.wait_until(lambda: self.backlog("a") > 10, 10, "a backlog")
        emu.drop("a")  # the unacknowledged window goes again after the reconnect
        emu.wait(lambda: emu.connect_count("a") >= 2, 20, "the reconnect")
        emu.hold_puback("a", False)
        self.all_delivered()
        self.assert_logged("device 'a': connection to the edge lost")
        self.assertNotIn("quarantine", self.out())
        self.stop_clean()

    def test_sigterm_with_a_half_open_connection(self):
        emu = self.emu
        emu.hold_puback("a", True)  # batches in flight ...
        harness.wait_until(lambda: self.backlog("a") > 10, 10, "a backlog")
        emu.stall("a", True)        # ... on a connection that no longer answers
        t0 = time.monotonic()
        self.stop_clean()
        self.assertLess(time.monotonic() - t0, 10 * SLOW, "stopping took too long")
        # Everything unacknowledged was kept: a restart delivers it.
        emu.hold_puback("a", False)
        self.proc, _, _ = self.start_tbgw(self.cfg, name="tbgw2")
        self.all_delivered()
        self.assertIn("waiting from before; sending them first", self.out())
        self.stop_clean()


if __name__ == "__main__":
    harness.main()
