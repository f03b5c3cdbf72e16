#!/usr/bin/python3
"""Gateway mode, uplink (edge.gateway): one session with the gateway's credentials carries
every device; each device is announced with its type before its first data; telemetry of
many devices goes grouped in v1/gateway/telemetry messages (timestamps kept, none above
64 KiB, each device's data in order); an Edge outage, SIGKILL and a graceful stop lose
nothing; a reload announces the devices it adds and disconnects the ones it removes, and
nobody else; a restart disconnects nobody; the gateway's rate limits pace the session;
device credentials and OTA blocks are configuration errors in gateway mode."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest

import harness

POLL_MS = 100
COMMIT_MS = 200
CONNECT = "v1/gateway/connect"
DISCONNECT = "v1/gateway/disconnect"
TELEMETRY = "v1/gateway/telemetry"
ATTRIBUTES = "v1/gateway/attributes"
# Rate limits are windows of wall-clock time between tbgw's pacer and the Edge's buckets:
# under valgrind (TBGW_WRAPPER) what tbgw sends in one window can arrive in the next.
TIMED = unittest.skipIf(harness.WRAPPER, "measures rates in wall-clock windows")
# Under valgrind the polls themselves run late: a gap between two stored polls is a late
# poll there, not a lost one.
GAP_POLLS = 2.5 * (harness.SLOW if harness.WRAPPER else 1)


class Gateway(harness.TestCase):
    def start(self, devices=("a", "b", "c"), n_tags=2, poll_ms=POLL_MS, edge="", name="tbgw",
              emu=None, fm=None, extra_device="", gateway='token = "GW";'):
        if emu is None:
            emu = self.emulator(devices=[("gw", "GW")])
            emu.set_gateway("gw")
        self.emu = emu
        self.fm = fm or self.fake_modbus("--tcp", "0")
        self.devices = devices
        self.poll_ms = poll_ms
        tags = ", ".join('{ key = "k%d"; table = "holding"; address = %d; type = "uint16"; }'
                         % (i, i) for i in range(n_tags))
        devs = ", ".join('{ name = "%s"; type = "meter-%s"; unit_id = %d; poll_ms = %d; %s '
                         'attributes = ( { key = "fw"; table = "holding"; address = 50; '
                         'type = "uint16"; } ); telemetry = ( %s ); }'
                         % (d, d, i + 1, poll_ms, extra_device, tags)
                         for i, d in enumerate(devices))
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 300; devices = ( %s ); }' % (self.fm.port, devs))
        self.cfg_text = self.config(self.emu.port, bus,
                                    edge="gateway = { %s }; %s" % (gateway, edge))
        self.proc, _, self.cfg = self.start_tbgw(self.cfg_text, name=name)
        return self.emu

    def stamps(self, device, key="k0"):
        return [ts for ts, k, _ in self.emu.telemetry(device) if k == key]

    def gw_messages(self, topic):
        return [m for m in self.emu.messages("gw", topic) if not m.rejected]

    def announced(self):
        """Device names in the order of their v1/gateway/connect messages."""
        return [m.json()["device"] for m in self.gw_messages(CONNECT)]

    def wait_flowing(self, devices=None, n=5):
        devices = devices or self.devices
        self.emu.wait(lambda: all(len(self.stamps(d)) > n for d in devices), 20,
                      "telemetry of %s" % ", ".join(devices))

    def assert_complete(self, stamps, start, end, allow_gap=None):
        """Every poll between start and end arrived (duplicates allowed), in order."""
        first = list(dict.fromkeys(stamps))
        self.assertEqual(sorted(first), first, "out of order")
        window = sorted(t for t in set(stamps) if start <= t <= end)
        gaps = [(b - a, a) for a, b in zip(window, window[1:]) if b - a > self.poll_ms * GAP_POLLS]
        if allow_gap:
            gaps = [g for g in gaps if not (allow_gap[0] <= g[1] <= allow_gap[1])]
        self.assertEqual(gaps, [], "samples missing")
        self.assertGreater(len(window), (end - start) / self.poll_ms * 0.6)

    def outage(self, on):
        self.emu.refuse_tcp(on)
        if on:
            self.emu.drop_all()

    # ---- one session, announcements, grouping ----

    def test_one_session_carries_every_device(self):
        emu = self.start()
        self.wait_flowing()
        # One MQTT session: the gateway's; the devices never connect on their own.
        self.assertEqual(emu.connect_count("gw"), 1)
        self.assertEqual(set(emu.gateway_connected("gw")), {"a", "b", "c"})
        self.assertEqual(emu.subdevices("gw"), {"a": "meter-a", "b": "meter-b", "c": "meter-c"})
        subs = emu.subscriptions("gw")
        for topic in ("v1/gateway/attributes", "v1/gateway/rpc", "v1/gateway/attributes/response",
                      "v1/devices/me/rpc/response/+"):
            self.assertEqual(subs.get(topic), 1, topic)
        # Each device announced once, with its type, before its first data.
        connects = self.gw_messages(CONNECT)
        self.assertEqual(sorted(self.announced()), ["a", "b", "c"])
        for m in connects:
            d = m.json()
            self.assertEqual(d["type"], "meter-" + d["device"])
        for dev in ("a", "b", "c"):
            first_data = min(m.recv_ms for m in emu.messages("gw")
                             if m.topic in (TELEMETRY, ATTRIBUTES) and dev in m.json())
            announced = [m.recv_ms for m in connects if m.json()["device"] == dev][0]
            self.assertLessEqual(announced, first_data, dev)
        # Several devices per message, each an array of {ts, values}, within 64 KiB.
        msgs = self.gw_messages(TELEMETRY)
        self.assertTrue(any(len(m.json()) > 1 for m in msgs), "no message carries two devices")
        for m in msgs:
            self.assertLessEqual(len(m.payload), 65536 - 4 - len(TELEMETRY))
            for dev, arr in m.json().items():
                self.assertIn(dev, ("a", "b", "c"))
                self.assertIsInstance(arr, list)
                for e in arr:
                    self.assertEqual(set(e), {"ts", "values"})
        # Per-device order; timestamps are the polls' (spaced by poll_ms), not arrival times.
        for dev in ("a", "b", "c"):
            s = self.stamps(dev)
            self.assertEqual(s, sorted(s), dev)
        # Client attributes through the gateway, grouped; the gateway's own ones too.
        emu.wait(lambda: all("fw" in emu.attributes(d) and "tbgw_bus" in emu.attributes(d)
                             for d in ("a", "b", "c")), 10, "client attributes")
        self.assertEqual(emu.attributes("a")["tbgw_bus"], "plc")
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual(st["gateway"]["mode"], "gateway")
        self.assertEqual(st["gateway"]["gateway_session"]["connected"], True)
        self.assertEqual(st["gateway"]["gateway_session"]["announced"], 3)
        self.assertEqual({d["edge"] for d in st["devices"]}, {"announced"})
        self.stop_tbgw(self.proc)

    def test_metrics_show_the_gateway_session(self):
        port = harness.free_port()
        self.start(edge="", devices=("a", "b"))
        self.proc.stop()
        cfg = self.cfg_text + 'metrics = { listen = "127.0.0.1:%d"; };\n' % port
        self.proc, _, _ = self.start_tbgw(cfg, name="tbgw2")
        self.emu.wait(lambda: len(self.emu.gateway_connected("gw")) == 2, 15, "announced")

        def scrape():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * harness.SLOW)
            try:
                c.request("GET", "/metrics")
                return c.getresponse().read().decode()
            finally:
                c.close()

        def sample(text, name):
            m = re.search(r"^%s (\S+)$" % name, text, re.M)
            return float(m.group(1)) if m else None
        harness.wait_until(lambda: sample(scrape(), "tbgw_gateway_devices_announced") == 2, 10,
                           "two devices announced in the metrics")
        text = scrape()
        self.assertEqual(sample(text, "tbgw_sessions_up"), 1)   # one session, the gateway's
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.emu.drop_all()
        self.emu.refuse_tcp(True)
        harness.wait_until(lambda: sample(scrape(), "tbgw_gateway_devices_announced") == 0, 10,
                           "no device announced while the gateway is offline")
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual({d["edge"] for d in st["devices"]}, {"gateway offline"})
        self.assertIn("gateway offline, 0/2 devices announced", st["gateway"]["summary"])
        self.emu.refuse_tcp(False)
        self.stop_tbgw(self.proc)

    def test_large_messages_stay_below_64_KiB(self):
        # 40 devices x 60 keys x 10 polls/s: far more than one message holds.
        devs = tuple("m%02d" % i for i in range(40))
        emu = self.start(devices=devs, n_tags=60, poll_ms=100)
        self.outage(True)
        time.sleep(2)
        self.outage(False)
        emu.wait(lambda: sum(len(m.payload) > 40000 for m in self.gw_messages(TELEMETRY)) >= 2,
                 30, "large gateway messages after the outage")
        for m in self.gw_messages(TELEMETRY):
            self.assertLessEqual(len(m.payload) + 2 + len(TELEMETRY) + 2, 65536)
        self.assertEqual(emu.counts("gw")["rejected_msgs"], 0)
        self.stop_tbgw(self.proc)

    def test_a_device_not_flagged_gateway_is_named_and_loses_nothing(self):
        emu = self.emulator(devices=[("gw", "GW")])   # not "Is gateway"
        self.start(emu=emu)
        started = int(time.time() * 1000)
        harness.wait_until(lambda: "is the device a gateway in ThingsBoard" in self.proc.output(),
                           20, "the hint about the gateway flag")
        self.assertEqual(emu.gateway_connected("gw"), [])
        self.assertEqual(self.gw_messages(TELEMETRY), [])
        # Flagged, and the session renewed: everything read meanwhile arrives.
        emu.set_gateway("gw")
        emu.drop("gw")
        emu.wait(lambda: all(self.stamps(d) and self.stamps(d)[-1] > started + 12000
                             for d in self.devices), 30, "the data after the flag was set")
        for dev in self.devices:
            self.assert_complete(self.stamps(dev), started + 500, started + 11000)
        self.stop_tbgw(self.proc)

    def test_the_gateway_provisions_itself(self):
        emu = self.emulator()
        emu.add_provision_profile("K", "S")
        host = socket.gethostname()
        self.start(emu=emu, gateway='provision = { key = "K"; secret = "S"; };')
        emu.wait(lambda: host in emu.devices, 15, "the provisioned gateway device")
        req, resp = emu.provisions[0]
        self.assertEqual(req["deviceName"], host)
        # ThingsBoard creates a plain device: it is flagged gateway by hand, then its next
        # session carries the devices.
        emu.set_gateway(host)
        emu.drop(host)
        emu.wait(lambda: set(emu.gateway_connected(host)) == {"a", "b", "c"}, 20, "announced")
        self.stop_tbgw(self.proc)
        # A restart uses the stored credentials: no second provisioning.
        self.proc, _, _ = self.start_tbgw(self.cfg_text, name="tbgw2")
        emu.wait(lambda: len(emu.gateway_connected(host)) == 3, 20, "announced again")
        self.assertEqual(len(emu.provisions), 1)
        self.stop_tbgw(self.proc)

    # ---- store and forward ----

    def test_outage_loses_nothing_and_keeps_order(self):
        emu = self.start()
        self.wait_flowing()
        start = max(self.stamps(d)[0] for d in self.devices)
        self.outage(True)
        time.sleep(2.5)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertFalse(st["gateway"]["gateway_session"]["connected"])
        self.assertGreater(st["gateway"]["spool"]["batches"], 10)
        self.outage(False)
        end = int(time.time() * 1000) - 500
        emu.wait(lambda: all(self.stamps(d)[-1] > end + 500 for d in self.devices), 30,
                 "the backlog")
        for dev in self.devices:
            self.assert_complete(self.stamps(dev), start, end)
        # Announced again in the new session, before its data.
        self.assertEqual(sorted(self.announced()), sorted(list(self.devices) * 2))
        self.stop_tbgw(self.proc)

    def test_sigkill_loses_at_most_one_commit_interval(self):
        emu = self.start()
        self.wait_flowing()
        self.outage(True)
        time.sleep(1.5)
        killed_at = int(time.time() * 1000)
        self.proc.kill(signal.SIGKILL)
        self.proc.wait(5)
        self.outage(False)
        self.proc, _, _ = self.start_tbgw(self.cfg_text, name="tbgw2")
        restarted = int(time.time() * 1000)
        emu.wait(lambda: all(self.stamps(d)[-1] > restarted + 300 for d in self.devices), 20,
                 "data after the restart")
        edge = killed_at - COMMIT_MS - POLL_MS - int(100 * harness.SLOW)
        for dev in self.devices:
            before = [t for t in self.stamps(dev) if t < killed_at]
            self.assertGreaterEqual(max(before), edge, dev)
            self.assert_complete(self.stamps(dev), self.stamps(dev)[0], edge)
        self.stop_tbgw(self.proc)

    def test_graceful_stop_keeps_everything_and_restart_disconnects_nobody(self):
        emu = self.start()
        self.wait_flowing()
        self.outage(True)
        time.sleep(1.0)
        stopped_at = int(time.time() * 1000)
        self.stop_tbgw(self.proc)
        self.outage(False)
        self.proc, _, _ = self.start_tbgw(self.cfg_text, name="tbgw2")
        emu.wait(lambda: all(self.stamps(d)[-1] > stopped_at + 1000 for d in self.devices), 20,
                 "data after the restart")
        for dev in self.devices:
            self.assert_complete(self.stamps(dev), self.stamps(dev)[0], stopped_at - POLL_MS,
                                 allow_gap=(stopped_at - 3 * POLL_MS, stopped_at + 60000))
        # A restart ends the session; it never disconnects a device.
        self.stop_tbgw(self.proc)
        self.assertEqual(self.gw_messages(DISCONNECT), [])

    # ---- reload ----

    def test_reload_announces_added_and_disconnects_removed_only(self):
        emu = self.start(devices=("a", "b"))
        self.wait_flowing()
        # b leaves, c arrives.
        text = self.cfg_text.replace('name = "b"; type = "meter-b"; unit_id = 2',
                                     'name = "c"; type = "meter-c"; unit_id = 3')
        self.assertNotEqual(text, self.cfg_text)
        with open(self.cfg, "w") as f:
            f.write(text)
        self.proc.kill(signal.SIGHUP)
        emu.wait(lambda: len(self.stamps("c")) > 3, 20, "c's telemetry")
        self.assertEqual([m.json() for m in self.gw_messages(DISCONNECT)], [{"device": "b"}])
        self.assertEqual(set(emu.gateway_connected("gw")), {"a", "c"})
        self.assertEqual(emu.subdevices("gw")["c"], "meter-c")
        c_connect = [m.recv_ms for m in self.gw_messages(CONNECT) if m.json()["device"] == "c"]
        self.assertEqual(len(c_connect), 1)
        self.assertLessEqual(c_connect[0], min(m.recv_ms for m in self.gw_messages(TELEMETRY)
                                               if "c" in m.json()))
        # a kept flowing across the reload, on the same session, announced once.
        self.assertEqual(self.gw_messages(DISCONNECT)[0].json(), {"device": "b"})
        n = len(self.stamps("a"))
        emu.wait(lambda: len(self.stamps("a")) > n + 3, 10, "a after the reload")
        self.assertEqual(emu.connect_count("gw"), 1, "the reload reconnected the gateway")
        self.assertEqual([m.json()["device"] for m in self.gw_messages(CONNECT)].count("a"), 1)
        self.stop_tbgw(self.proc)
        self.assertEqual(len(self.gw_messages(DISCONNECT)), 1)

    # ---- rate limits ----

    @TIMED
    def test_gateway_rate_limits_pace_the_session(self):
        emu = self.emulator(devices=[("gw", "GW")])
        emu.set_gateway("gw")
        # Tight: 8 messages and 200 data points per second for the whole session.
        emu.set_gateway_rate_limits(messages="8:1,40:10", telemetry_messages="5:1",
                                    telemetry_datapoints="200:1,1200:10")
        devs = tuple("d%d" % i for i in range(6))
        self.start(devices=devs, n_tags=4, emu=emu)
        time.sleep(8 * harness.SLOW)
        self.assertEqual(emu.counts("gw")["rate_limited"], 0, "the gateway exceeded its limits")
        self.assertEqual(emu.connect_count("gw"), 1)
        for d in devs:
            self.assertGreater(len(self.stamps(d)), 3, d)
        self.assertIn("rate limits", self.proc.output())
        self.stop_tbgw(self.proc)

    @TIMED
    def test_each_devices_share_of_the_gateway_limits(self):
        emu = self.emulator(devices=[("gw", "GW")])
        emu.set_gateway("gw")
        # Each device may send 30 data points and 6 messages a second through the gateway;
        # it reads 40 a second (4 registers every 100 ms): the rest waits in the spool.
        emu.set_gateway_rate_limits(device_messages="6:1", device_telemetry_messages="4:1",
                                    device_telemetry_datapoints="30:1,200:10")
        self.start(devices=("a", "b", "c"), n_tags=4, emu=emu)
        started = time.time()
        time.sleep(8 * harness.SLOW)
        self.assertEqual(emu.counts("gw")["rate_limited"], 0, "a device exceeded its share")
        self.assertEqual(emu.connect_count("gw"), 1)
        elapsed = time.time() - started
        for d in ("a", "b", "c"):
            n = len(emu.telemetry(d))
            self.assertGreater(n, 40, d)
            self.assertLessEqual(n, 30 * (elapsed + 1), d)
        self.stop_tbgw(self.proc)

    # ---- configuration ----

    def check(self, text):
        path = self.write("check.conf", text, 0o640)
        return subprocess.run([harness.TBGW, "--check-config", "-c", path],
                              capture_output=True, text=True, timeout=30 * harness.SLOW)

    def test_config_errors_in_gateway_mode(self):
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = 502; devices = (\n'
               '  { name = "a"; unit_id = 1; token = "A";\n'
               '    telemetry = ( { key = "k"; table = "holding"; address = 0; type = "uint16"; } ); },\n'
               '  { name = "b"; unit_id = 2;\n'
               '    ota = { command = "/bin/true"; };\n'
               '    telemetry = ( { key = "k"; table = "holding"; address = 0; type = "uint16"; } ); }\n'
               '); }')
        text = self.config(1883, bus, edge='gateway = { token = "GW"; };')
        r = self.check(text)
        self.assertEqual(r.returncode, 78, r.stderr)
        lines = r.stderr.splitlines()
        line_of = {n: i + 1 for i, l in enumerate(text.splitlines()) for n in ('token = "A"', "ota =")
                   if n in l}
        self.assertTrue(any(":%d: buses.[0].devices.[0].token: device 'a': in gateway mode"
                            % line_of['token = "A"'] in l for l in lines), r.stderr)
        self.assertTrue(any(":%d: buses.[0].devices.[1]" % line_of["ota ="] in l and
                            "OTA cannot be carried for a device over the gateway API" in l
                            for l in lines), r.stderr)
        # Without credentials and OTA, the same file is fine; the gateway needs its own.
        ok = text.replace('token = "A";', "").replace('ota = { command = "/bin/true"; };', "")
        r = self.check(ok)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.check(ok.replace('gateway = { token = "GW"; };', "gateway = { };"))
        self.assertEqual(r.returncode, 78)
        self.assertIn("edge.gateway: the gateway has no credentials", r.stderr)
        r = self.check(ok.replace('gateway = { token = "GW"; };',
                                  'gateway = { token = "GW"; mqtt = { username = "u"; }; };'))
        self.assertEqual(r.returncode, 78)
        self.assertIn("the gateway has token and mqtt", r.stderr)
        # type outside gateway mode: accepted, with a warning that it does nothing.
        dm = ok.replace('gateway = { token = "GW"; };', "").replace(
            'name = "a"; unit_id = 1;', 'name = "a"; unit_id = 1; token = "A"; type = "meter";').replace(
            'name = "b"; unit_id = 2;', 'name = "b"; unit_id = 2; token = "B";')
        r = self.check(dm)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("type has an effect only in gateway mode", r.stderr)


if __name__ == "__main__":
    harness.main()
