"""Shared by the fault-injection tests in tests/faults/ (and bench/soak.py).

They use the integration tests' harness (tests/integration/harness.py: peers on 127.0.0.1,
temporary directories, processes stopped by PID) and add what every fault test asserts:
the daemon keeps running, loses nothing it promised to keep, logs each fault once per
episode, and exits 0 on SIGTERM with no sanitizer report.

Accounting: one tag per device, read with report = "always", so every answered poll is
one sample; the fake slave's read counter says how many polls it answered, the emulator
what arrived. Timestamps are unique per device (one poll per poll_ms), which makes the
check exact: the set of timestamps the Edge got is the set tbgw read.
"""
import errno
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("TBGW_SRCDIR", os.path.abspath(os.path.join(HERE, "..", "..")))

import harness  # noqa: E402

# Slow runs (valgrind) multiply every bound: the harness scales what it waits for itself;
# a test multiplies by SLOW only the bounds it asserts on (how long something took).
SLOW = harness.SLOW


_NAMESPACES = (
    # root (CI): a private mount namespace
    (["unshare", "--mount", "--propagation", "private", "--"], ["-m"]),
    # anyone, where unprivileged user namespaces are allowed
    (["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--"],
     ["-U", "-m", "--preserve-credentials"]),
)
_MOUNT = 'mount -t tmpfs -o size="$1"k,mode=0750 tbgw-test "$0" && echo ready && exec sleep infinity'


class SmallFs:
    """A tmpfs of kib KiB on path, in a private mount namespace held by a sleeping process:
    a test can fill the disk under storage.path without root on the host's filesystems and
    without leaving a mount behind (the mount dies with the holder, which the test stops by
    PID). tbgw runs inside through prefix (nsenter keeps its PID); the test reaches the
    files through /proc/HOLDER/root/path. Exits 77 (SKIP, never a silent pass) where
    neither root nor a user namespace may mount."""

    def __init__(self, test, path, kib):
        harness.need_tool("unshare")
        harness.need_tool("nsenter")
        os.makedirs(path, exist_ok=True)
        why = []
        for ns, enter in _NAMESPACES:
            holder = test.spawn(ns + ["sh", "-c", _MOUNT, path, str(kib)], "smallfs",
                                stdout_pipe=True)
            try:
                if holder.read_line(10 * SLOW) == "ready":
                    self.holder = holder
                    self.prefix = ["nsenter", "-t", str(holder.pid)] + enter + ["--"]
                    self.root = "/proc/%d/root%s" % (holder.pid, path)
                    return
            except AssertionError:
                pass
            holder.stop()
            why.append(holder.output().strip() or "failed")
        harness.skip_unless(False, "cannot mount a small tmpfs for storage.path (%s)"
                            % "; ".join(why))

    def file(self, name):
        return os.path.join(self.root, name)

    def free_bytes(self):
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, name="filler"):
        """Take every free block; returns the bytes taken."""
        n = 0
        with open(self.file(name), "ab", buffering=0) as f:
            chunk = b"\0" * 65536
            while True:
                try:
                    n += f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 512:
                        return n
                    chunk = chunk[:len(chunk) // 2]

    def free(self, name="filler"):
        os.unlink(self.file(name))


def tag(key, address, table="holding", type_="uint16"):
    return '{ key = "%s"; table = "%s"; address = %d; type = "%s"; }' % (key, table, address,
                                                                           type_)


class FaultCase(harness.TestCase):
    """A gateway against the emulator and fake slaves, with the fault tests' assertions."""

    @staticmethod
    def _devices(devices, poll_ms):
        """devices: list of (name, unit). One uint16 tag "v" at holding 0 each."""
        return ", ".join('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; '
                         'telemetry = ( %s ); }' % (n, u, n, poll_ms, tag("v", 0))
                         for n, u in devices)

    def tcp_bus(self, fm, devices, poll_ms=100, timeout_ms=300, extra="", name="plc"):
        return ('{ name = "%s"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                'timeout_ms = %d; %s devices = ( %s ); }'
                % (name, fm.port, timeout_ms, extra, self._devices(devices, poll_ms)))

    def rtu_bus(self, port, devices, poll_ms=100, timeout_ms=200, extra="", name="rs485"):
        return ('{ name = "%s"; driver = "modbus-rtu"; port = "%s"; baud = 19200; '
                'timeout_ms = %d; %s devices = ( %s ); }'
                % (name, port, timeout_ms, extra, self._devices(devices, poll_ms)))

    # ---- observation ----

    def out(self, proc=None):
        return (proc or self.proc).output()

    def count(self, text, proc=None):
        return self.out(proc).count(text)

    def wait_log(self, text, timeout=10, proc=None, n=1):
        """Wait until text appears n times in tbgw's log."""
        harness.wait_until(lambda: self.count(text, proc) >= n, timeout,
                           "%r in the log (x%d)" % (text, n))

    def assert_logged(self, text, n=1, proc=None):
        """text appears exactly n times: once per episode, not once per poll or attempt."""
        self.assertEqual(self.count(text, proc), n,
                         "%r logged %d times, expected %d; log:\n%s"
                         % (text, self.count(text, proc), n, self.out(proc)[-8000:]))

    def status(self):
        r = self.tbgwctl("status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def stamps(self, emu, device, key="v"):
        return [ts for ts, k, _ in emu.telemetry(device) if k == key]

    def values(self, emu, device, key="v"):
        return [v for _, k, v in emu.telemetry(device) if k == key]

    def assert_in_order(self, emu, device):
        """The Edge got the device's data in the order it was read (duplicates of a batch
        whose PUBACK was lost are allowed; they repeat a run that was already there)."""
        seen, last = set(), None
        for ts in self.stamps(emu, device):
            if ts in seen:
                continue
            if last is not None:
                self.assertGreater(ts, last, "device %s: %d arrived after %d" % (device, ts, last))
            seen.add(ts)
            last = ts

    # ---- accounting: every sample read arrives ----

    def stop_production(self, fakes):
        """The slaves in fakes fall silent. Returns the reads they answered intact with data
        (not with an exception, not dropped or damaged by a fault): one sample each, as
        every device has one tag."""
        reads = 0
        for fm in fakes:
            fm.fault("silent", 0)
            st = fm.stats()
            reads += st["reads"] - st["exceptions"] - st["damaged"]
        return reads

    def assert_delivered(self, reads, devices, timeout=30, in_order=False):
        """The Edge (self.emu) has exactly one sample of devices per read (the repeat of a
        batch whose PUBACK was lost counts once); in_order: and each device's in the order
        they were read."""
        def delivered():
            return sum(len(set(self.stamps(self.emu, d))) for d in devices)
        try:
            self.emu.wait(lambda: delivered() >= reads, timeout, "every sample")
        except TimeoutError:
            pass
        self.assertEqual(delivered(), reads, "samples read by tbgw vs. samples at the Edge")
        if in_order:
            for d in devices:
                self.assert_in_order(self.emu, d)

    def stop_clean(self, proc=None):
        """SIGTERM: exit 0, no sanitizer report."""
        self.stop_tbgw(proc or self.proc)
