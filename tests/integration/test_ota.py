#!/usr/bin/python3
"""Over-the-air updates against the emulator: the whole flow for every checksum algorithm,
a corrupted image, a connection lost mid-download, a failing and a hanging command, the
port released for an exclusive bus, no ota block, and packages announced twice."""
import json
import os
import signal
import time

import harness

HOOK = """#!/bin/sh
# Record what tbgw tells the hook, keep a copy of the image, then do what the test wants.
echo "$TBGW_DEVICE|$TBGW_OTA_KIND|$TBGW_OTA_TITLE|$TBGW_OTA_VERSION|$TBGW_OTA_CHECKSUM|$TBGW_OTA_CHECKSUM_ALGORITHM|$TBGW_BUS|$TBGW_BUS_PORT|$TBGW_UNIT_ID|$1" >> "$HOOK_DIR/calls"
cp "$1" "$HOOK_DIR/image.$TBGW_OTA_VERSION"
if [ -n "$TBGW_BUS_PORT" ] && [ -e "$TBGW_BUS_PORT" ]; then
    real=$(readlink -f "$TBGW_BUS_PORT")
    held=0
    for fd in /proc/$PPID/fd/*; do
        [ "$(readlink -f "$fd")" = "$real" ] && held=1
    done
    echo "$held" > "$HOOK_DIR/port-held.$TBGW_OTA_VERSION"
fi
case "$TBGW_OTA_VERSION" in
    *fail*) echo "flashing..." ; echo "flash failed: bad magic" >&2 ; exit 3 ;;
    *hang*) sleep 300 & echo $! > "$HOOK_DIR/child" ; wait ;;
    *slow*) sleep 2 ;;
    *once*) [ -e "$HOOK_DIR/failed-once" ] || { touch "$HOOK_DIR/failed-once"; echo "flash busy" >&2; exit 4; } ;;
esac
exit 0
"""


class Ota(harness.TestCase):
    def start(self, ota='ota = { command = "%(hook)s"; timeout_s = 20; };', rtu=False, exclusive=False):
        self.hook = self.write("hook.sh", HOOK, 0o755)
        self.emu = self.emulator(devices=[("dev", "TD")])
        ota_text = ota % {"hook": self.hook} if ota else ""
        if exclusive:
            ota_text = ota_text.replace("timeout_s", "exclusive_bus = true; timeout_s")
        if rtu:
            a, b = self.socat_pair()
            self.fm = self.fake_modbus("--rtu", b)
            bus = '{ name = "rs485"; driver = "modbus-rtu"; port = "%s"; timeout_ms = 300; devices = ( %%s ); }' % a
        else:
            self.fm = self.fake_modbus("--tcp", "0")
            bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                   'timeout_ms = 300; devices = ( %%s ); }' % self.fm.port)
        dev = ('{ name = "dev"; unit_id = 3; token = "TD"; poll_ms = 100; %s '
               'telemetry = ( { key = "v"; table = "holding"; address = 0; type = "uint16"; } ); }' % ota_text)
        self.cfg = self.config(self.emu.port, bus % dev)
        self.proc, _, _ = self.start_tbgw(self.cfg, env={"HOOK_DIR": self.tmp})
        self.emu.wait(lambda: "v1/devices/me/attributes" in self.emu.subscriptions("dev"), 10)
        return self.emu

    def states(self, kind="fw"):
        return [v for _, k, v in self.emu.telemetry("dev") if k == kind + "_state"]

    def wait_state(self, state, kind="fw", timeout=30):
        self.emu.wait(lambda: state in self.states(kind), timeout, "%s_state %s" % (kind, state))

    def calls(self):
        try:
            with open(self.path("calls")) as f:
                return [l.rstrip("\n").split("|") for l in f]
        except FileNotFoundError:
            return []

    def last(self, key):
        vals = [v for _, k, v in self.emu.telemetry("dev") if k == key]
        return vals[-1] if vals else None

    def test_every_checksum_algorithm(self):
        emu = self.start()
        algs = ("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")
        for i, alg in enumerate(algs):
            with self.subTest(algorithm=alg):
                data = os.urandom(20000 + 3333 * i)
                version = "1.%d-%s" % (i, alg)
                n = len(self.states())
                emu.set_ota("dev", "fw", "boiler-fw", version, data, alg)
                emu.wait(lambda: "UPDATED" in self.states()[n:], 30, "UPDATED for " + alg)
                self.assertEqual(self.states()[n:], ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING",
                                                     "UPDATED"])
                with open(self.path("image." + version), "rb") as f:
                    self.assertEqual(f.read(), data)
                self.assertEqual(self.last("current_fw_version"), version)
        call = self.calls()[0]
        self.assertEqual(call[:4], ["dev", "fw", "boiler-fw", "1.0-MD5"])
        self.assertEqual(call[5:7], ["MD5", "plc"])
        self.assertEqual(call[8], "3")
        self.assertEqual(len(self.calls()), len(algs))
        # The chunks asked for were 16 KiB, each download under a new request id.
        reqs = emu.ota_requests("dev")
        self.assertTrue(all(size == 16384 for _, _, _, size in reqs))
        self.assertEqual(len({r for _, r, _, _ in reqs}), len(algs))
        with open(self.path("state", "ota-state.json")) as f:
            self.assertEqual(json.load(f)["devices"]["dev"]["fw"]["version"], "1.6-MURMUR3_128")
        # Reported again after a restart, and not updated again.
        self.stop_tbgw(self.proc)
        n = len(emu.messages("dev", "v1/devices/me/telemetry"))
        self.proc, _, _ = self.start_tbgw(self.cfg, env={"HOOK_DIR": self.tmp}, name="tbgw2")
        emu.wait(lambda: any(json.loads(m.payload).get("current_fw_version") == "1.6-MURMUR3_128"
                             for m in emu.messages("dev", "v1/devices/me/telemetry")[n:]
                             if m.payload.startswith(b"{")), 10)
        time.sleep(1)
        self.assertEqual(len(self.calls()), len(algs))
        self.stop_tbgw(self.proc)

    def test_software_update(self):
        emu = self.start()
        emu.set_ota("dev", "sw", "app", "2.0", b"x" * 1000, "SHA256")
        self.wait_state("UPDATED", "sw")
        self.assertEqual(self.last("current_sw_version"), "2.0")
        self.assertEqual(self.calls()[0][1], "sw")
        self.stop_tbgw(self.proc)

    def test_corrupted_image_fails(self):
        emu = self.start()
        emu.set_ota("dev", "fw", "fw", "1.1", os.urandom(30000), "SHA256", checksum="00" * 32)
        self.wait_state("FAILED")
        self.assertTrue(self.last("fw_error").startswith("checksum mismatch: SHA256 expected 0000"))
        self.assertEqual(self.calls(), [])
        self.stop_tbgw(self.proc)

    def test_download_resumes_after_a_drop(self):
        emu = self.start()
        data = os.urandom(16384 * 30 + 100)
        emu.set_ota("dev", "fw", "fw", "big", data, "CRC32")
        emu.wait(lambda: len(emu.ota_requests("dev")) >= 10, 20)
        emu.drop("dev")
        self.wait_state("UPDATED", timeout=60)
        with open(self.path("image.big"), "rb") as f:
            self.assertEqual(f.read(), data)
        reqs = emu.ota_requests("dev")
        self.assertGreaterEqual(len({r for _, r, _, _ in reqs}), 2)  # a new id after the reconnect
        chunks = [n for _, _, n, _ in reqs]
        self.assertLess(len(chunks), 31 + 12)  # resumed, not restarted from chunk 0
        self.assertIn("resuming the download", self.proc.output())
        self.stop_tbgw(self.proc)

    def test_download_stays_below_the_message_limit(self):
        # Each chunk request is a message to ThingsBoard's rate limits: a download at full
        # speed gets its session closed again and again.
        emu = self.start()
        emu.set_rate_limits(messages="6:1")
        emu.drop("dev")
        emu.wait(lambda: emu.connect_count("dev") >= 2, 10)
        data = os.urandom(16384 * 20)
        emu.set_ota("dev", "fw", "fw", "6.0", data, "SHA256")
        self.wait_state("UPDATED", timeout=60)
        self.assertEqual(emu.counts("dev")["rate_limited"], 0)
        self.assertEqual(emu.connect_count("dev"), 2)
        self.stop_tbgw(self.proc)

    def test_failing_command(self):
        emu = self.start()
        emu.set_ota("dev", "fw", "fw", "3.0-fail", b"image", "MD5")
        self.wait_state("FAILED")
        self.assertEqual(self.last("fw_error"), "the command exited with status 3: flash failed: bad magic")
        self.assertNotEqual(self.last("current_fw_version"), "3.0-fail")
        self.stop_tbgw(self.proc)

    def test_hanging_command_is_killed_with_its_children(self):
        emu = self.start(ota='ota = { command = "%(hook)s"; timeout_s = 1; };')
        emu.set_ota("dev", "fw", "fw", "4.0-hang", b"image", "MD5")
        self.wait_state("FAILED", timeout=20)
        self.assertEqual(self.last("fw_error"), "the command did not finish within 1 s and was killed")
        with open(self.path("child")) as f:
            child = int(f.read())
        harness.wait_until(lambda: not os.path.exists("/proc/%d" % child) or
                           open("/proc/%d/stat" % child).read().split()[2] == "Z", 10, "the child to die")
        self.stop_tbgw(self.proc)

    def test_exclusive_bus_releases_the_port(self):
        emu = self.start(rtu=True, exclusive=True)
        emu.wait(lambda: emu.telemetry("dev"), 10)
        emu.set_ota("dev", "fw", "fw", "5.0", b"image", "SHA256")
        self.wait_state("UPDATED")
        with open(self.path("port-held.5.0")) as f:
            self.assertEqual(f.read().strip(), "0")  # tbgw had closed the port
        self.assertIn("bus 'rs485': paused, port released", self.proc.output())
        # UPDATED goes out as the command ends; the bus takes the port back after that.
        harness.wait_until(lambda: "bus 'rs485': resumed" in self.proc.output(), 10,
                           "the bus to resume")
        n = len(emu.telemetry("dev"))
        emu.wait(lambda: len(emu.telemetry("dev")) > n + 2, 10)  # polling again
        self.stop_tbgw(self.proc)

    def test_shared_bus_keeps_the_port(self):
        emu = self.start(rtu=True)
        emu.set_ota("dev", "fw", "fw", "5.1", b"image", "SHA256")
        self.wait_state("UPDATED")
        with open(self.path("port-held.5.1")) as f:
            self.assertEqual(f.read().strip(), "1")
        self.stop_tbgw(self.proc)

    def test_no_ota_block(self):
        emu = self.start(ota=None)
        emu.set_ota("dev", "fw", "fw", "6.0", b"image", "SHA256")
        self.wait_state("FAILED")
        self.assertEqual(self.last("fw_error"), "tbgw has no ota block for device 'dev' (see tbgw.conf(5))")
        self.assertEqual(emu.ota_requests("dev"), [])
        self.stop_tbgw(self.proc)

    def test_announced_twice_runs_once(self):
        # Each assignment makes ThingsBoard show INITIATED until the device says otherwise
        # (DefaultOtaPackageStateService): every push of the same package is answered with
        # what tbgw does about it, and the command still runs once.
        emu = self.start()
        data = os.urandom(16384 * 8)
        emu.set_ota("dev", "fw", "fw", "7.0", data, "SHA256")
        emu.wait(lambda: len(emu.ota_requests("dev")) >= 2, 10)
        emu.set_ota("dev", "fw", "fw", "7.0", data, "SHA256")  # again, during the download
        self.wait_state("UPDATED")
        self.assertGreaterEqual(self.states().count("DOWNLOADING"), 2)  # the download went on
        self.assertIn("announced again; continuing the download", self.proc.output())
        emu.set_ota("dev", "fw", "fw", "7.0", data, "SHA256")  # and after it
        emu.wait(lambda: self.states().count("UPDATED") == 2, 10, "UPDATED again")
        emu.drop("dev")                                        # and at the next connect's sync
        emu.wait(lambda: emu.connect_count("dev") >= 2, 10)
        time.sleep(1.5)
        self.assertEqual(len(self.calls()), 1)
        self.assertEqual(self.states().count("UPDATED"), 2)
        self.stop_tbgw(self.proc)

    def test_failed_package_assigned_again_is_retried(self):
        emu = self.start()
        data = os.urandom(5000)
        emu.set_ota("dev", "fw", "fw", "8.0-once", data, "SHA256")
        self.wait_state("FAILED")
        self.assertEqual(len(self.calls()), 1)
        # A reconnect's sync announces it again: no retry at every reconnect.
        emu.drop("dev")
        emu.wait(lambda: emu.connect_count("dev") >= 2, 10)
        time.sleep(1.5)
        self.assertEqual(len(self.calls()), 1)
        # Assigned again by the user: tried again, without restarting tbgw.
        emu.set_ota("dev", "fw", "fw", "8.0-once", data, "SHA256")
        self.wait_state("UPDATED")
        self.assertEqual(len(self.calls()), 2)
        self.assertEqual(self.last("current_fw_version"), "8.0-once")
        self.assertIn("assigned again after it failed; trying again", self.proc.output())
        self.stop_tbgw(self.proc)

    def restart_mid_download(self, sig):
        emu = self.start()
        data = os.urandom(16384 * 30 + 100)
        emu.set_ota("dev", "fw", "fw", "9.0", data, "SHA256")
        emu.wait(lambda: len(emu.ota_requests("dev")) >= 10, 20)
        self.proc.kill(sig)
        self.proc.wait(10)
        before = len(self.states())
        self.proc, _, _ = self.start_tbgw(self.cfg, env={"HOOK_DIR": self.tmp}, name="tbgw2")
        self.wait_state("UPDATED", timeout=60)
        with open(self.path("image.9.0"), "rb") as f:
            self.assertEqual(f.read(), data)
        # What it said after the restart matches what it did: DOWNLOADING, going on.
        after = self.states()[before:]
        self.assertEqual(after[0], "DOWNLOADING")
        self.assertEqual(after[-1], "UPDATED")
        self.assertRegex(self.proc.output(), r"the download of fw 9\.0 goes on from byte [1-9]")
        chunks = [n for _, _, n, _ in emu.ota_requests("dev")]
        self.assertLess(len(chunks), 31 + 12)  # resumed, not restarted from chunk 0
        self.assertEqual(len(self.calls()), 1)
        self.stop_tbgw(self.proc)

    def reload_with_another_bus_timeout(self):
        """The bus restarts; the device, unchanged, keeps its session."""
        with open(self.path("tbgw.conf"), "w") as f:
            f.write(self.cfg.replace("timeout_ms = 300;", "timeout_ms = 400;"))
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_reload_mid_download_resumes_in_the_same_session(self):
        emu = self.start()
        data = os.urandom(16384 * 30 + 100)
        emu.set_ota("dev", "fw", "fw", "9.1", data, "SHA256")
        emu.wait(lambda: len(emu.ota_requests("dev")) >= 10, 20)
        self.reload_with_another_bus_timeout()
        self.wait_state("UPDATED", timeout=30)
        with open(self.path("image.9.1"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(emu.connect_count("dev"), 1)
        chunks = [n for _, _, n, _ in emu.ota_requests("dev")]
        self.assertLess(len(chunks), 31 + 12)  # resumed, not restarted from chunk 0
        self.assertEqual(len(self.calls()), 1)
        self.stop_tbgw(self.proc)

    def test_reload_while_the_command_runs_reports_its_outcome(self):
        emu = self.start()
        emu.set_ota("dev", "fw", "fw", "9.2-slow", os.urandom(5000), "SHA256")
        harness.wait_until(lambda: self.calls(), 20, "the update command")
        # The reload waits for the command; its outcome goes out on the same session.
        self.reload_with_another_bus_timeout()
        self.wait_state("UPDATED", timeout=20)
        self.assertEqual(self.last("current_fw_version"), "9.2-slow")
        self.assertEqual(emu.connect_count("dev"), 1)
        self.stop_tbgw(self.proc)

    def test_restart_mid_download_resumes(self):
        self.restart_mid_download(signal.SIGTERM)

    def test_sigkill_mid_download_resumes(self):
        self.restart_mid_download(signal.SIGKILL)


if __name__ == "__main__":
    harness.main()
