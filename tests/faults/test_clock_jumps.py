#!/usr/bin/python3
"""The wall clock jumps back and forward (an NTP step, a person with `date -s`), staged by
clockshift.so (see clockshift.c; without it this file is a SKIP, not a pass).

What is right: tbgw schedules by the monotonic clock and stamps samples with the wall
clock. So a jump moves the timestamps with it, the schedule neither stalls (after a step
back) nor bursts to catch up (after a step forward), nothing counts as an overrun, the
MQTT sessions stay up, and the spool keeps the order the samples were read in, which after
a step back is not the order of their timestamps."""
import os
import time

import faultlib
from faultlib import harness

SHIM = os.path.join(harness.BUILDDIR, "tests", "faults", "clockshift.so")
HOUR_MS = 3600 * 1000
POLL_MS = 100


class ClockJumps(faultlib.FaultCase):
    def setUp(self):
        super().setUp()
        self.emu = self.emulator(devices=[("a", "T-a")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.offset_file = self.write("clock-offset", "0\n", 0o644)
        env = {"LD_PRELOAD": SHIM, "TBGW_CLOCKSHIFT_FILE": self.offset_file,
               # the clock is "synchronised": no correction through the Edge's getTime
               "TBGW_CLOCK": "synced",
               # ASan wants to be first in the library list; the shim is not instrumented
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        bus = self.tcp_bus(self.fm, [("a", 1)], poll_ms=POLL_MS, timeout_ms=1000)
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus), env=env)
        self.emu.wait(lambda: len(self.stamps(self.emu, "a")) >= 3, 10)

    def jump(self, offset_ms):
        """Set tbgw's wall clock to real time + offset_ms and wait until a sample shows it."""
        with open(self.offset_file, "w") as f:
            f.write("%d\n" % offset_ms)
        want = time.time() * 1000 + offset_ms

        def shifted():
            s = self.stamps(self.emu, "a")
            return s and abs(s[-1] - want) < 600000
        self.emu.wait(shifted, 10, "a timestamp %+d ms off" % offset_ms)

    def polls_per_s(self, seconds=2.0):
        r0, t0 = self.fm.stats()["reads"], time.monotonic()
        time.sleep(seconds)
        return (self.fm.stats()["reads"] - r0) / (time.monotonic() - t0)

    def steps(self):
        """Differences between consecutive timestamps, in arrival order (duplicates out)."""
        seen, out = set(), []
        for ts in self.stamps(self.emu, "a"):
            if ts not in seen:
                seen.add(ts)
                out.append(ts)
        return [b - a for a, b in zip(out, out[1:])]

    def finish(self):
        """Stop production; every read arrives exactly once; exit 0."""
        # Not in timestamp order: after a step back, the order read is not that of the stamps.
        self.assert_delivered(self.stop_production([self.fm]), ("a",))
        self.stop_clean()

    def assert_steady_schedule(self):
        st = self.status()["devices"][0]
        self.assertEqual(st["overruns"], 0, "a jump made polls count as overruns")
        self.assertNotIn("polling takes longer", self.out())

    def test_jumps_while_online(self):
        base = self.polls_per_s()
        self.jump(-HOUR_MS)
        after_back = self.polls_per_s()
        self.jump(+HOUR_MS)
        after_fwd = self.polls_per_s()
        self.jump(0)
        # The schedule is the monotonic clock's: the same rate after each step.
        expect = 1000.0 / POLL_MS
        for what, rate in (("before", base), ("after the step back", after_back),
                           ("after the step forward", after_fwd)):
            self.assertGreater(rate, expect * 0.6, "polls/s %s" % what)
            self.assertLess(rate, expect * 1.3, "polls/s %s" % what)
        self.assert_steady_schedule()
        # Timestamps follow the wall clock: back an hour, forward two, back one.
        big = [d for d in self.steps() if abs(d) > HOUR_MS / 2]
        self.assertEqual(len(big), 3, big)
        self.assertTrue(big[0] < 0 < big[1] and big[2] < 0, big)
        self.assertTrue(all(0 < d < 10000 for d in self.steps() if abs(d) <= HOUR_MS / 2))
        # The sessions never noticed.
        self.assertEqual(self.emu.connect_count("a"), 1)
        self.assertNotIn("connection to the edge lost", self.out())
        self.finish()

    def test_backlog_across_jumps_keeps_the_reading_order(self):
        emu = self.emu
        emu.refuse_tcp(True)
        emu.drop_all()
        self.wait_log("cannot connect")
        n = self.fm.stats()["reads"]
        harness.wait_until(lambda: self.fm.stats()["reads"] > n + 10, 10, "polls")
        # Offline, so the jumps are not seen through the Edge: wait for polls instead.
        for offset in (+HOUR_MS, -HOUR_MS):
            with open(self.offset_file, "w") as f:
                f.write("%d\n" % offset)
            n = self.fm.stats()["reads"]
            harness.wait_until(lambda: self.fm.stats()["reads"] > n + 10, 10, "polls")
        st = self.status()["gateway"]["spool"]
        self.assertGreater(st["batches"], 0)
        self.assertGreaterEqual(st["oldest_age_s"], 0)
        emu.refuse_tcp(False)
        self.fm.fault("silent", 0)
        reads = self.fm.stats()["reads"]
        emu.wait(lambda: len(set(self.stamps(emu, "a"))) >= reads, 30, "the backlog")
        # Sent in the order read: an hour forward, two back, nothing re-sorted by time.
        big = [d for d in self.steps() if abs(d) > HOUR_MS / 2]
        self.assertEqual(len(big), 2, big)
        self.assertTrue(big[0] > 0 > big[1], big)
        self.assertTrue(all(0 < d < 10000 for d in self.steps() if abs(d) <= HOUR_MS / 2))
        self.assert_steady_schedule()
        self.finish()


if __name__ == "__main__":
    harness.skip_unless(os.access(SHIM, os.R_OK), "clockshift.so is not built (make check "
                        "builds it)")
    harness.main()
