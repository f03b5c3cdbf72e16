#!/usr/bin/python3
"""Store and forward against the emulator: an Edge outage loses nothing and keeps the
order, SIGKILL during an outage loses at most one commit interval, a graceful stop keeps
everything, a full spool drops the oldest and says so, a damaged spool file is moved
aside, and a batch the Edge keeps rejecting is quarantined."""
import json
import os
import signal
import time

import harness

POLL_MS = 100
COMMIT_MS = 200


class Spool(harness.TestCase):
    def start(self, n_tags=1, poll_ms=POLL_MS, storage="", devices=("a",), name="tbgw", emu=None,
              fm=None):
        self.emu = emu or self.emulator(devices=[(d, "T-" + d) for d in devices])
        self.fm = fm or self.fake_modbus("--tcp", "0")
        tags = ", ".join('{ key = "k%d"; table = "holding"; address = %d; type = "uint16"; }' % (i, i)
                         for i in range(n_tags))
        devs = ", ".join('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; telemetry = ( %s ); }'
                         % (d, i + 1, d, poll_ms, tags) for i, d in enumerate(devices))
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; timeout_ms = 300; '
               'devices = ( %s ); }' % (self.fm.port, devs))
        self.cfg = self.config(self.emu.port, bus, storage=storage)
        self.proc, _, _ = self.start_tbgw(self.cfg, name=name)
        return self.emu

    def outage(self, on):
        self.emu.refuse_tcp(on)
        if on:
            self.emu.drop_all()

    def stamps(self, device="a", key="k0"):
        return [ts for ts, k, _ in self.emu.telemetry(device) if k == key]

    def assert_complete(self, stamps, start, end, poll_ms=POLL_MS, allow_gap=None):
        """Every poll between start and end is there (duplicates allowed), in order."""
        distinct = sorted(set(stamps))
        # A batch whose PUBACK a dropped session lost is sent again after the reconnect,
        # after newer ones the Edge already has: order is that of first arrivals.
        first = list(dict.fromkeys(stamps))
        self.assertEqual(sorted(first), first, "out of order")
        window = [t for t in distinct if start <= t <= end]
        gaps = [(b - a, a) for a, b in zip(window, window[1:]) if b - a > poll_ms * 2.5]
        if allow_gap:
            gaps = [g for g in gaps if not (allow_gap[0] <= g[1] <= allow_gap[1])]
        self.assertEqual(gaps, [], "samples missing")
        self.assertGreater(len(window), (end - start) / poll_ms * 0.6)

    def test_outage_loses_nothing_and_keeps_order(self):
        emu = self.start(devices=("a", "b"))
        emu.wait(lambda: len(self.stamps("a")) > 5 and len(self.stamps("b")) > 5, 10)
        start = self.stamps("a")[0]
        self.outage(True)
        time.sleep(3)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertGreater(st["gateway"]["spool"]["batches"], 10)
        self.assertGreater(st["devices"][0]["spool_backlog"], 5)
        self.outage(False)
        end = int(time.time() * 1000) - 500
        emu.wait(lambda: self.stamps("a") and self.stamps("a")[-1] > end + 500 and
                 self.stamps("b")[-1] > end + 500, 30, "the backlog")
        for dev in ("a", "b"):
            self.assert_complete(self.stamps(dev), start, end)
        self.stop_tbgw(self.proc)

    def drain_under_limits(self, edge_config, report):
        """An outage's backlog drains after it without tripping the Edge's rate limits (a
        trip closes the session: ThingsBoard's answer to a device that sends too fast)."""
        emu = self.emulator(devices=[("a", "T-a"), ("b", "T-b")])
        emu.set_rate_limits(messages="30:1,900:60", telemetry_messages="15:1",
                            telemetry_datapoints="60:1", report=report)
        self.start(n_tags=3, devices=("a", "b"), emu=emu)
        proc = self.proc
        if edge_config:
            self.stop_tbgw(proc)
            self.cfg = self.cfg.replace("edge = { host", "edge = { rate_limits = { %s }; host" % edge_config)
            self.proc, _, _ = self.start_tbgw(self.cfg, name="tbgw2")
        emu.wait(lambda: len(self.stamps("a")) > 3 and len(self.stamps("b")) > 3, 15)
        start = self.stamps("a")[-1]
        self.outage(True)
        time.sleep(4)
        self.outage(False)
        end = int(time.time() * 1000) - 500
        emu.wait(lambda: self.stamps("a")[-1] > end + 500 and self.stamps("b")[-1] > end + 500, 40,
                 "the backlog")
        for dev in ("a", "b"):
            self.assert_complete(self.stamps(dev), start, end)
            self.assertEqual(emu.counts(dev)["rate_limited"], 0)
        self.stop_tbgw(self.proc)
        return self.proc.output()

    def test_backlog_drains_below_the_edge_rate_limits(self):
        log = self.drain_under_limits(None, report=True)
        self.assertIn("pacing each device below the edge's rate limits: messages 27:1,810:60, "
                      "telemetry messages 14:1, data points 54:1", log)

    def test_rate_limits_from_the_configuration(self):
        # An Edge older than ThingsBoard 3.8 does not tell its limits; the configuration does.
        log = self.drain_under_limits('telemetry_messages = "15:1"; telemetry_datapoints = "60:1"; '
                                      'messages = "30:1";', report=False)
        self.assertIn("(edge.rate_limits)", log)

    def test_an_edge_that_does_not_tell_its_limits(self):
        emu = self.emulator(devices=[("a", "T-a")])
        emu.set_rate_limits(telemetry_messages="1000:1", report=False)
        emu.client_rpc_timeout_s = None
        self.start(n_tags=1, devices=("a",), emu=emu)
        # Telemetry waits a few seconds for the answer, then goes unpaced, and says so.
        emu.wait(lambda: "the edge does not tell its rate limits" in self.proc.output(), 10)
        emu.wait(lambda: len(self.stamps("a")) > 3, 10)
        self.stop_tbgw(self.proc)

    def test_sigkill_during_outage_loses_at_most_one_interval(self):
        emu = self.start()
        emu.wait(lambda: len(self.stamps()) > 3, 10)
        self.outage(True)
        time.sleep(2)
        killed_at = int(time.time() * 1000)
        self.proc.kill(signal.SIGKILL)
        self.proc.wait(5)
        self.outage(False)
        self.proc, _, _ = self.start_tbgw(self.cfg, name="tbgw2")
        restarted = int(time.time() * 1000)
        emu.wait(lambda: self.stamps() and self.stamps()[-1] > restarted + 300, 20)
        before = [t for t in self.stamps() if t < killed_at]
        # What was read up to one commit interval (and the poll in progress) before the kill
        # is on disk. The slack is for scheduling: a commit due is not always a commit done
        # (and under valgrind it is much later).
        edge = killed_at - COMMIT_MS - POLL_MS - int(100 * harness.SLOW)
        self.assertGreaterEqual(max(before), edge, "the newest sample on disk was read %d ms "
                                "before the kill" % (killed_at - max(before)))
        self.assert_complete(self.stamps(), self.stamps()[0], edge)
        self.assertIn("waiting from before; sending them first", self.proc.output())
        self.stop_tbgw(self.proc)

    def test_graceful_stop_keeps_everything(self):
        emu = self.start()
        emu.wait(lambda: len(self.stamps()) > 3, 10)
        self.outage(True)
        time.sleep(1.5)
        stopped_at = int(time.time() * 1000)
        self.stop_tbgw(self.proc)
        self.outage(False)
        self.proc, _, _ = self.start_tbgw(self.cfg, name="tbgw2")
        emu.wait(lambda: self.stamps()[-1] > stopped_at + 1000, 20)
        # Nothing is missing up to the stop (the gap after it is the time tbgw was down).
        self.assert_complete(self.stamps(), self.stamps()[0], stopped_at - POLL_MS,
                             allow_gap=(stopped_at - 3 * POLL_MS, stopped_at + 60000))
        self.stop_tbgw(self.proc)

    def test_full_spool_drops_the_oldest(self):
        emu = self.start(n_tags=100, poll_ms=20, storage="max_size_mb = 1;", devices=("a", "b", "c"))
        emu.wait(lambda: len(self.stamps()) > 3, 10)
        self.outage(True)
        emu.wait(lambda: "spool: full (storage.max_size_mb = 1); dropping the oldest data"
                 in self.proc.output(), 60)
        outage_start = int(time.time() * 1000)
        time.sleep(1)
        st = json.loads(self.tbgwctl("status", "--json").stdout)["gateway"]["spool"]
        self.assertGreater(st["dropped_batches"], 0)
        self.assertLessEqual(st["bytes"], 1 << 20)
        self.outage(False)
        emu.wait(lambda: self.stamps()[-1] > int(time.time() * 1000) - 500, 30)
        self.assertEqual(self.proc.output().count("dropping the oldest data"), 1)
        # The newest data survived the outage.
        self.assertTrue([t for t in self.stamps() if outage_start <= t <= outage_start + 1000])
        self.stop_tbgw(self.proc)

    def test_damaged_spool_is_moved_aside(self):
        os.makedirs(self.path("state"))
        with open(self.path("state", "spool.db"), "wb") as f:
            f.write(b"SQLite format 3\x00" + os.urandom(8192))
        emu = self.start()
        emu.wait(lambda: len(self.stamps()) > 3, 10)
        self.assertIn("moved aside to", self.proc.output())
        self.assertTrue([n for n in os.listdir(self.path("state")) if n.startswith("spool.db.damaged-")])
        self.stop_tbgw(self.proc)

    def test_a_rejected_batch_is_quarantined(self):
        emu = self.emulator(devices=[("a", "T-a")])
        fm = self.fake_modbus("--tcp", "0")
        # The Edge drops the session on any batch holding the value 666.
        emu.close_on("a", lambda topic, payload: topic == "v1/devices/me/telemetry" and b":666" in payload)
        self.start(emu=emu, fm=fm)
        emu.wait(lambda: len(self.stamps()) > 3, 10)
        fm.set(1, "holding", 0, 666)
        time.sleep(0.15)
        fm.set(1, "holding", 0, 1)
        emu.wait(lambda: "is kept in the quarantine table" in self.proc.output(), 60)
        n = len(self.stamps())
        emu.wait(lambda: len(self.stamps()) > n + 5, 20)  # the device is not stuck
        st = json.loads(self.tbgwctl("status", "--json").stdout)["gateway"]["spool"]
        self.assertGreaterEqual(st["quarantined"], 1)
        self.assertNotIn(666, [v for _, k, v in emu.telemetry("a")])
        # Kept for inspection: tbgwctl spool shows the batch, and why.
        q = json.loads(self.tbgwctl("spool", "--json").stdout)
        self.assertEqual(q["quarantined"], st["quarantined"])
        self.assertIn(":666", q["batches"][0]["payload"])
        self.assertEqual(q["batches"][0]["device"], "a")
        text = self.tbgwctl("spool").stdout
        self.assertIn("quarantined batch", text)
        self.assertIn("closed the session twice when it was sent alone", text)
        self.stop_tbgw(self.proc)

    def test_closes_never_quarantine_valid_data(self):
        # An outage's backlog drains into an Edge whose rate limits tbgw does not know: the
        # Edge closes session after session with valid batches in flight. None of them is
        # to blame, and none is quarantined.
        emu = self.emulator(devices=[("a", "T-a")])
        emu.set_rate_limits(telemetry_messages="10:1", report=False)
        emu.client_rpc_timeout_s = None
        self.start(emu=emu, poll_ms=200)
        emu.wait(lambda: len(self.stamps()) > 3, 15)
        start = self.stamps()[-1]
        self.outage(True)
        time.sleep(3)
        self.outage(False)
        end = int(time.time() * 1000) - 500
        emu.wait(lambda: self.stamps()[-1] > end + 500, 60, "the backlog")
        self.assertGreater(emu.counts("a")["rate_limited"], 0)
        self.assert_complete(self.stamps(), start, end, poll_ms=200)
        st = json.loads(self.tbgwctl("status", "--json").stdout)["gateway"]["spool"]
        self.assertEqual(st["quarantined"], 0)
        self.assertEqual(json.loads(self.tbgwctl("spool", "--json").stdout)["batches"], [])
        self.assertNotIn("quarantine table", self.proc.output())
        self.stop_tbgw(self.proc)


if __name__ == "__main__":
    harness.main()
