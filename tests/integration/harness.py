"""Shared helpers for tbgw's integration tests.

Every test starts its own peers (fake Modbus slaves, socat pty pairs, the ThingsBoard
emulator, tbgw itself) on 127.0.0.1, in its own temporary directory, and stops every
process it started by PID. Nothing here sleeps to wait for readiness: tbgw is waited for
through $NOTIFY_SOCKET (READY=1, exactly as systemd does), the fakes through the READY
line they print.

Run a test file directly (python3 tests/integration/test_x.py) after a build; it finds
the build through $TBGW_BUILDDIR (set by `make check`) or ../../ relative to itself.
A test that lacks a tool it needs exits 77, which automake reports as SKIP.
"""

import contextlib
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("TBGW_SRCDIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILDDIR = os.environ.get("TBGW_BUILDDIR") or SRCDIR
FAKES = os.path.join(SRCDIR, "tests", "fakes")
DATA = os.path.join(SRCDIR, "tests", "data")
sys.path.insert(0, FAKES)

TBGW = os.path.join(BUILDDIR, "tbgw")
TBGWCTL = os.path.join(BUILDDIR, "tbgwctl")
FAKE_MODBUS = os.path.join(BUILDDIR, "tests", "fakes", "fake-modbus")

# Generous bounds: CI machines are slow and sanitizer builds slower still.
# $TBGW_TIMEOUT_SCALE multiplies them for slower runs still (valgrind: make check-valgrind).
SLOW = float(os.environ.get("TBGW_TIMEOUT_SCALE") or 1)
START_TIMEOUT = 20.0 * SLOW
STOP_TIMEOUT = 20.0 * SLOW

# $TBGW_WRAPPER prefixes the daemon's command line (e.g. "valgrind --tool=memcheck ...");
# only tbgw itself runs under it, not the peers or tbgwctl.
WRAPPER = shlex.split(os.environ.get("TBGW_WRAPPER", ""))


def skip_unless(cond, why):
    """Exit 77 (automake SKIP) unless cond holds."""
    if not cond:
        print("SKIP: " + why)
        sys.exit(77)


def need_tool(name):
    skip_unless(shutil.which(name), name + " is not installed")


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.02):
    """Poll pred() until it is true; raise AssertionError naming what after timeout (times
    $TBGW_TIMEOUT_SCALE)."""
    timeout *= SLOW
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Proc:
    """A child process with its output captured to a file, stopped by PID."""

    def __init__(self, argv, logpath, env=None, cwd=None, stdout_pipe=False):
        self.argv = argv
        self.logpath = logpath
        self.report = None  # a checker's report file (start_tbgw under valgrind)
        self.log = open(logpath, "wb")
        self.p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if stdout_pipe else self.log,
            stderr=self.log,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.p.pid

    def read_line(self, timeout):
        """One line from stdout (stdout_pipe=True), bounded by timeout."""
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.p.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: no output line within %.1fs; log:\n%s"
                                     % (self.argv[0], timeout, self.output()))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                c = os.read(fd, 1)
                if not c:
                    raise AssertionError("%s exited before printing a line; log:\n%s"
                                         % (self.argv[0], self.output()))
                buf += c
        return buf.decode().strip()

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig):
        """Send sig to the process (if it is still running)."""
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        return self.p.wait(timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stop by PID: sig, then SIGKILL after timeout. Returns the exit status."""
        if self.alive():
            os.kill(self.pid, sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(timeout=5)
        if self.p.stdout:
            self.p.stdout.close()
        self.log.close()
        return self.p.returncode

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def report_text(self):
        """What a checker wrapping the process (valgrind) reported, or ""."""
        path = getattr(self, "report", None)
        if not path or not os.path.exists(path):
            return ""
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")


class NotifySocket:
    """Plays systemd's side of sd_notify(): binds $NOTIFY_SOCKET and collects messages.

    A thread reads the socket all the time, as PID 1 does: sd_notify() blocks once the
    socket's queue is full (net.unix.max_dgram_qlen, often 10 datagrams), so a test that
    only read while waiting would wedge a daemon that reloads or reports status often."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._reader, name="notify", daemon=True)
        self._thread.start()

    def _reader(self):
        while not self._closed:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                data = self.sock.recv(65536).decode(errors="replace")
            except (OSError, ValueError):  # closed under us
                return
            with self._cond:
                self.messages.extend(line for line in data.split("\n") if line)
                self._cond.notify_all()

    def wait_for(self, entry, timeout=START_TIMEOUT, proc=None, start=0):
        """Wait until a message equal to entry (e.g. "READY=1") or matching a "KEY=" prefix
        arrives; returns its index. Fails early if proc exits."""
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.messages):
                    m = self.messages[i]
                    if m == entry or (entry.endswith("=") and m.startswith(entry)):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %.1fs; got %r%s" % (
                        entry, timeout, self.messages,
                        ("; log:\n" + proc.output()) if proc else ""))
                if proc is not None and not proc.alive():
                    # What it sent before exiting may still be on its way to the reader.
                    self._cond.wait(0.3)
                    if i >= len(self.messages):
                        raise AssertionError("tbgw exited (status %s) before %s; log:\n%s"
                                             % (proc.p.returncode, entry, proc.output()))
                    continue
                self._cond.wait(min(left, 0.2))

    def count(self, entry):
        with self._cond:
            return sum(1 for m in self.messages if m == entry)

    def close(self):
        self._closed = True
        self._thread.join(2)
        self.sock.close()


class TestCase(unittest.TestCase):
    """Gives each test a temporary directory and stops every process it started."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tbgw-test-")
        self._procs = []
        self._cleanups_late = []

    def tearDown(self):
        failed = self._outcome_failed()
        for p in reversed(self._procs):
            p.stop()
            if failed:
                sys.stderr.write("---- %s ----\n%s\n" % (" ".join(p.argv[:3]), p.output()[-6000:]))
                if p.report_text():
                    sys.stderr.write("---- its checker's report ----\n%s\n"
                                     % p.report_text()[-12000:])
        for fn in reversed(self._cleanups_late):
            with contextlib.suppress(Exception):
                fn()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        if result is None:
            return False
        return any(t is self for t, _ in (result.failures + result.errors))

    def later(self, fn):
        self._cleanups_late.append(fn)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, text, mode=0o600):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def spawn(self, argv, name, env=None, stdout_pipe=False, cwd=None):
        p = Proc(argv, self.path(name + ".log"), env=env, cwd=cwd, stdout_pipe=stdout_pipe)
        self._procs.append(p)
        return p

    # ---- tbgw ----

    def config(self, edge_port, buses="", edge="", storage="", extra=""):
        """A tbgw.conf whose state and control socket live in this test's directory."""
        return """
edge = { host = "127.0.0.1"; port = %d; %s };
storage = { path = "%s"; commit_interval_ms = 200; %s };
control = { socket = "%s"; };
health = { interval_s = 0; };
log = { level = "debug"; };
%s
buses = ( %s );
""" % (edge_port, edge, self.path("state"), storage, self.path("control.sock"), extra, buses)

    def tbgw_env(self, extra=None):
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        env.pop("STATE_DIRECTORY", None)
        env.pop("RUNTIME_DIRECTORY", None)
        if extra:
            env.update(extra)
        return env

    def start_tbgw(self, config_text, args=(), env=None, wait_ready=True, name="tbgw",
                   prefix=()):
        """Write config_text, start tbgw with a notify socket, wait for READY=1. prefix: a
        command that execs tbgw in the end (keeping its PID), e.g. to set up a namespace.
        Returns (proc, notify, config_path)."""
        cfg = self.write(name + ".conf", config_text, 0o640)
        notify = NotifySocket(self.path(name + ".notify"))
        self.later(notify.close)
        e = self.tbgw_env(env)
        e["NOTIFY_SOCKET"] = notify.path
        wrapper, report = list(WRAPPER), None
        if wrapper and os.path.basename(wrapper[0]) == "valgrind":
            # Its report in a file of its own: tests read tbgw's output line by line.
            report = self.path(name + ".valgrind")
            wrapper.append("--log-file=" + report)
        proc = self.spawn(list(prefix) + wrapper + [TBGW, "-c", cfg] + list(args), name, env=e)
        proc.report = report
        if wait_ready:
            notify.wait_for("READY=1", proc=proc)
        return proc, notify, cfg

    def stop_tbgw(self, proc, expect=0):
        rc = proc.stop()
        self.assertEqual(rc, expect, "tbgw exit status; log:\n" + proc.output())
        self.assert_clean_log(proc)
        return rc

    def assert_clean_log(self, proc):
        """No sanitizer report in a process's output; under valgrind, no error and (with
        --track-fds) no file descriptor left open at exit but the standard three."""
        out = proc.output()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer"):
            self.assertNotIn(marker, out, "sanitizer report in %s:\n%s" % (proc.argv[0], out))
        report = proc.report_text()
        # --track-fds lists every descriptor open at exit but the standard three; valgrind's
        # own report file shows up among them as "inherited".
        left = [l for l in re.findall(r"Open (?:file descriptor|\S+ socket) \d+[^\n]*", report)
                if proc.report not in l]
        self.assertEqual(left, [], "file descriptors left open at exit:\n" + report)
        for n in re.findall(r"ERROR SUMMARY: (\d+) errors", report):
            self.assertEqual(n, "0", "valgrind:\n" + report)

    # ---- peers ----

    def socat_pair(self, name="tty"):
        """A pty pair; returns (path_a, path_b). tbgw uses a, the fake uses b."""
        need_tool("socat")
        a, b = self.path(name + "-a"), self.path(name + "-b")
        self.spawn(["socat", "-d", "-d", "pty,raw,echo=0,link=" + a, "pty,raw,echo=0,link=" + b],
                   "socat-" + name)
        wait_until(lambda: os.path.exists(a) and os.path.exists(b), 10, "socat pty links")
        return a, b

    def fake_modbus(self, *args, name="fake-modbus"):
        """Start fake-modbus; returns a FakeModbus (tcp port, control connection)."""
        skip_unless(os.access(FAKE_MODBUS, os.X_OK), "fake-modbus not built")
        proc = self.spawn([FAKE_MODBUS] + list(args), name, stdout_pipe=True)
        line = proc.read_line(START_TIMEOUT)
        m = re.match(r"READY tcp=(\S+) control=(\d+)", line)
        self.assertTrue(m, "fake-modbus said %r" % line)
        fm = FakeModbus(proc, None if m.group(1) == "-" else int(m.group(1)), int(m.group(2)))
        self.later(fm.close)
        return fm

    def emulator(self, devices=(), **kw):
        """Start the ThingsBoard emulator; devices: (name, token) pairs to register."""
        from tb_emulator import Emulator
        emu = Emulator(**kw)
        if SLOW != 1:
            # Its wait_messages() and wait_connected() go through wait() too.
            wait = emu.wait
            emu.wait = lambda predicate, timeout=10.0, what=None: wait(predicate,
                                                                       timeout * SLOW, what)
        for name, token in devices:
            emu.add_device(name, token=token)
        emu.start()
        self.later(emu.stop)
        return emu

    def tbgwctl(self, *args, user=None):
        """Run tbgwctl against this test's daemon; returns CompletedProcess."""
        argv = [TBGWCTL, "-s", self.path("control.sock")] + list(args)
        if user:
            pw = pwd.getpwnam(user)
            argv = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                    "--clear-groups"] + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=30 * SLOW)


def make_pki(directory, clients=()):
    """A throwaway CA with certificates for TLS tests, made with the openssl CLI:
    ca, server (for 127.0.0.1/localhost), server-wronghost, server-expired, an unrelated
    CA (other-ca), and a client certificate per name in clients. Returns {name: (crt, key)}."""
    need_tool("openssl")
    os.makedirs(directory, exist_ok=True)
    out = {}

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=directory, check=True,
                       capture_output=True, timeout=60)

    def key_and_csr(name, cn):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)

    def sign(name, ca, days, san=None):
        args = ["x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                "-CAcreateserial", "-out", name + ".crt", "-days", str(days)]
        if san:
            ext = os.path.join(directory, name + ".ext")
            with open(ext, "w") as f:
                f.write("subjectAltName=" + san + "\n")
            args += ["-extfile", ext]
        run(*args)
        out[name] = (os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key"))

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", ca + ".key", "-out", ca + ".crt", "-subj", "/CN=tbgw test " + ca, "-days", "2")
        out[ca] = (os.path.join(directory, ca + ".crt"), os.path.join(directory, ca + ".key"))
    key_and_csr("server", "localhost")
    sign("server", "ca", 2, "IP:127.0.0.1,DNS:localhost")
    key_and_csr("server-wronghost", "other.example")
    sign("server-wronghost", "ca", 2, "DNS:other.example")
    key_and_csr("server-expired", "localhost")
    sign("server-expired", "ca", -1, "IP:127.0.0.1,DNS:localhost")
    for c in clients:
        key_and_csr(c, c)
        sign(c, "ca", 2)
    return out


class FakeModbus:
    """Client of fake-modbus's control port (see tests/fakes/README.md)."""

    def __init__(self, proc, port, control_port):
        self.proc = proc
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", control_port), timeout=10)
        self.f = self.sock.makefile("rw", newline="\n")

    def cmd(self, line, multi=False):
        self.f.write(line + "\n")
        self.f.flush()
        first = self.f.readline().strip()
        if first.startswith("err"):
            raise AssertionError("fake-modbus: %s -> %s" % (line, first))
        if not multi:
            return first
        lines = []
        while True:
            l = self.f.readline()
            if not l:
                raise AssertionError("fake-modbus closed the control connection")
            l = l.strip()
            if l == "end":
                return lines
            lines.append(l)

    def set(self, unit, table, addr, *values):
        self.cmd("set %d %s %d %s" % (unit, table, addr, " ".join(str(v) for v in values)))

    def get(self, unit, table, addr, count=1):
        r = self.cmd("get %d %s %d %d" % (unit, table, addr, count))
        return [int(v) for v in r.split()[1:]]

    def stats(self):
        r = self.cmd("stats")
        return {k: int(v) for k, v in (kv.split("=") for kv in r.split()[1:])}

    def log(self):
        """Requests since the last reset: list of (unit, fc, addr, count)."""
        return [tuple(int(x) for x in l.split()) for l in self.cmd("log", multi=True)]

    def reset(self):
        self.cmd("reset")

    def fault(self, *args):
        self.cmd("fault " + " ".join(str(a) for a in args))

    def close(self):
        with contextlib.suppress(Exception):
            self.sock.close()


def main():
    unittest.main(verbosity=2)
