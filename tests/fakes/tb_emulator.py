#!/usr/bin/python3
"""A ThingsBoard device-API emulator for tbgw's tests, benchmarks and demo.

It is an MQTT 3.1.1 server (protocol level 4; level 3 "MQIsdp" accepted too) that behaves
towards a device the way ThingsBoard's MQTT transport does with the default device profile
(JSON payloads, default topics). Every fact it relies on comes from
`thingsboard-device-api.md`, the protocol notes taken from ThingsBoard's source; the section
numbers in the comments below (§1 … §10) refer to that file. In short:

- Authentication (§3): access token (username = token), MQTT basic credentials with
  ThingsBoard's lookup order, X.509 client certificates over TLS, and the CONNACK refusal
  codes ThingsBoard picks for MQTT 3.1.1 (5, or 2 for "client id only"). Username or client
  id `provision` opens a provisioning-only session (§9). One session per device: a new
  connection closes the older one (§2).
- Subscriptions (§1): only the exact filters ThingsBoard knows are granted, at
  min(requested, 1); anything else gets 0x80. No session state survives a reconnect.
- Uplinks are validated like ThingsBoard does: a malformed payload on a known topic closes
  the connection without PUBACK (§2, §4, §5, §7, §8), an unknown topic is PUBACKed and
  dropped, a message over 65 536 bytes (topic, packet id and payload) closes the connection, `v1/gateway/*` from a device
  that is not a gateway is never acknowledged (§11).
- Gateway API (§11): a device flagged as gateway (set_gateway, read at CONNECT) announces
  sub-devices on v1/gateway/connect (created by name, with their type as device profile)
  and posts telemetry, attributes, attribute requests, RPC replies and claims for many of
  them per message; shared-attribute pushes and RPC reach a sub-device on v1/gateway/*
  only while it is connected in the gateway's current session. Conversion errors close the
  gateway's connection; the gateway rate limits govern the session.
- Downlinks: shared-attribute pushes and deletions (§5), server-side RPC with per-device ids
  from 0 and the BURST re-send of pending requests on every RPC (re)subscription (§6),
  attribute responses (§5), client-side RPC answers (§7), provisioning answers (§9), OTA
  notifications, chunks and errors (§10). The downlink QoS is the one granted to the first
  matching subscription, else 1 (§2).

- Value typing (JsonConverter): each telemetry and client-attribute key's stored type
  (BOOLEAN, LONG, DOUBLE, STRING, JSON) is decided from the JSON text as ThingsBoard does
  (key_types(), type_changes()); the values themselves are kept as json.loads returns them.
- Transport rate limits (set_rate_limits): counted per message kind exactly as
  DefaultTransportService / DefaultTransportRateLimitService count them, tenant-wide limits
  shared by every device, and the consequence ThingsBoard draws for each kind (rate_usage()).
- A device profile with the PROTOBUF payload type (add_device(protobuf=True)): a JSON
  upload on a v1 topic (telemetry, attributes, requests, RPC) closes the session, as
  ThingsBoard's ProtoMqttAdaptor does.

What it does not emulate: MQTT 5, protobuf payloads themselves (`…/p` topics are granted on
SUBSCRIBE but an uplink there closes the session), Gson's lenient JSON extensions (comments,
single quotes), the inactivity timeout, URL-based OTA packages, the gateway API's
protobuf form and MQTT 5 sub-device disconnect notices.

Use it in-process (see tests/fakes/README.md):

    emu = Emulator()
    emu.add_device("boiler-1", token="T1")
    emu.start()            # asyncio loop in a daemon thread; emu.port is the bound port
    ...
    emu.stop()

or as a program (`tb_emulator.py --help`), which prints `READY port=… tls_port=… control=…`
and accepts the same actions as JSON lines on a control port.

Threading: the asyncio loop owns the sockets and runs in its own thread. Every public method
may be called from any other thread; actions run on the loop thread and return once applied.
Recorded data is guarded by one re-entrant lock whose condition variable is notified on every
change, which is what wait() and wait_messages() sleep on.
"""

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import decimal
import hashlib
import inspect
import json
import math
import re
import secrets
import signal
import socket
import ssl
import string
import struct
import sys
import threading
import time
import traceback
import zlib
from collections import deque

# ---------------------------------------------------------------------------------------------
# ThingsBoard constants

# transport.mqtt.netty.max_payload_size (§2). ThingsBoard hands it to Netty's MqttDecoder as
# maxBytesInMessage, which Netty compares with the packet's remaining length: the variable
# header (topic, packet id) counts, so a QoS 1 PUBLISH on topic T carries at most
# MAX_PAYLOAD - 2 - len(T) - 2 bytes of payload.
MAX_PAYLOAD = 65536
# The most a packet can carry besides a maximal payload: a 65 535-byte topic and a packet id.
MAX_PACKET = MAX_PAYLOAD + 2 + 65535 + 2
OTA_MAX_CHUNK = MAX_PAYLOAD        # larger chunk sizes get PAYLOAD_TOO_LARGE (§10)
DEFAULT_RPC_EXPIRY_S = 10.0        # REST default RPC timeout (§6)
CLOSE_GRACE_S = 2.0                # how long a closing socket may take to flush before abort

RC_ACCEPTED = 0
RC_UNACCEPTABLE_PROTOCOL = 1
RC_IDENTIFIER_REJECTED = 2
RC_SERVER_UNAVAILABLE = 3
RC_NOT_AUTHORIZED = 5

PROVISION = "provision"
PROVISION_REQUEST = "/provision/request"
PROVISION_RESPONSE = "/provision/response"
PROVISION_NOT_FOUND = {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
PROVISION_FAILURE = {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
CREDENTIALS_TYPES = ("ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE")

OTA_KINDS = ("fw", "sw")
OTA_ERROR_TOPIC = "v2/fw/error"    # used for software requests too (§10)
# ThingsBoard matches `v2/fw/request/(\d+)/chunk/(\d+)`: other shapes are unknown topics.
OTA_REQUEST_RE = re.compile(r"v2/(fw|sw)/request/([0-9]+)/chunk/([0-9]+)\Z")
OTA_ALGORITHMS = ("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")
# Keys removed when a package is unassigned, in ThingsBoard's order (§10).
OTA_ALL_KEYS = ("title", "version", "ts", "state", "size", "checksum", "checksum_algorithm",
                "url", "tag")

# Subscription filters (§1). Attribute-push and RPC-request filters also choose the topic
# family of later pushes / requests; the value is the downlink topic (base).
ATTR_PUSH_FILTERS = {"v1/devices/me/attributes": "v1/devices/me/attributes",
                     "v2/a": "v2/a", "v2/a/j": "v2/a/j", "v2/a/p": "v2/a/p"}
RPC_REQUEST_FILTERS = {"v1/devices/me/rpc/request/+": "v1/devices/me/rpc/request/",
                       "v2/r/req/+": "v2/r/req/", "v2/r/req/j/+": "v2/r/req/j/",
                       "v2/r/req/p/+": "v2/r/req/p/"}
# Filters that are granted but only record the QoS used for those downlinks.
QOS_ONLY_FILTERS = frozenset((
    "v1/devices/me/attributes/response/+", "v1/devices/me/rpc/response/+",
    "v2/a/res/+", "v2/a/res/j/+", "v2/a/res/p/+",
    "v2/r/res/+", "v2/r/res/j/+", "v2/r/res/p/+",
    "v2/fw/response/+/chunk/+", "v2/fw/error", "v2/sw/response/+/chunk/+", "v2/sw/error",
    "v1/gateway/attributes", "v1/gateway/rpc", "v1/gateway/attributes/response",
    PROVISION_RESPONSE,
))

# Counters kept per device even when payloads are not recorded.
COUNTER_NAMES = ("connects", "messages", "telemetry_msgs", "telemetry_values", "attributes_msgs",
                 "attribute_requests", "rpc_responses", "client_rpcs", "claims",
                 "ota_requests", "unknown_msgs", "gateway_msgs", "rejected_msgs", "pubacks",
                 "rate_limited", "rate_limited_tenant", "payload_type_closes")

# The three limits of a tenant-profile level, as DefaultTransportRateLimitService names them
# (and getSessionLimits reports them).
RATE_KINDS = ("messages", "telemetryMessages", "telemetryDataPoints")

# MQTT control packet types
CONNECT, PUBLISH, PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 1, 3, 4, 8, 10, 12, 14
PINGRESP_PACKET = b"\xd0\x00"


# ---------------------------------------------------------------------------------------------
# Java / Gson / Jackson semantics that ThingsBoard's behaviour depends on

class Invalid(Exception):
    """ThingsBoard would reject this uplink: the session is closed without PUBACK."""


class ProtocolError(Exception):
    """The byte stream is not valid MQTT: the connection is closed."""


_JAVA_INT_RE = re.compile(r"[+-]?\d+\Z")


def java_int(text, bits=32):
    """Integer.parseInt (bits=32) / Long.parseLong (bits=64); ValueError like Java's."""
    if not _JAVA_INT_RE.match(text):
        raise ValueError("not an integer: %r" % text)
    value = int(text)
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise ValueError("out of range: %r" % text)
    return value


def gson_string(value):
    """JsonElement.getAsString() of a parsed JSON value; ValueError where Gson throws."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list) and len(value) == 1:   # a one-element array unwraps
        return gson_string(value[0])
    raise ValueError("not a JSON primitive: %r" % (value,))


def gson_long(value):
    """JsonElement.getAsLong(): numbers are truncated (wrapping like BigDecimal.longValue),
    strings go through Long.parseLong; anything else raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("boolean is not a number")
    if isinstance(value, _NumText):      # a JSON number kept as its text: BigDecimal.longValue
        value = int(decimal.Decimal(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        value = int(value)
    if isinstance(value, int):
        return ((value + (1 << 63)) % (1 << 64)) - (1 << 63)
    if isinstance(value, str):
        return java_int(value, 64)
    if isinstance(value, list) and len(value) == 1:
        return gson_long(value[0])
    raise ValueError("not a number: %r" % (value,))


def java_split_comma(text):
    """String.split(","): trailing empty strings are dropped, "" gives [""]."""
    if text == "":
        return [""]
    parts = text.split(",")
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def java_double(value):
    """Double.toString(): `22.0`, `0.001`, `1.0E-4`, `1.2345678E7` (what Jackson writes)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        return repr(value)     # Python prints this range without an exponent, with a ".0"
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    exp10 = (int(exp) if exp else 0) + len(whole) - 1     # exponent of digits[0]
    stripped = digits.lstrip("0")
    exp10 -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    return "%s%s.%sE%d" % ("-" if value < 0 else "", digits[0], digits[1:] or "0", exp10)


def java_json(value):
    """Serialise like Jackson: compact, UTF-8 unescaped, doubles as Java prints them."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{%s}" % ",".join("%s:%s" % (json.dumps(str(k), ensure_ascii=False), java_json(v))
                                 for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[%s]" % ",".join(java_json(v) for v in value)
    raise TypeError("not JSON-serialisable: %r" % (value,))


_PARSABLE_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")


class _NumText(str):
    """A JSON number's text, as Gson hands it to JsonConverter."""


def tb_number_type(text):
    """The type JsonConverter.buildNumericKeyValueProto gives a number written as text:
    BigDecimal of the text; whole (stripped scale <= 0) and not a plain decimal with '.' ->
    LONG, or STRING beyond a long; otherwise DOUBLE if the scale is at most 16, else STRING."""
    t = decimal.Decimal(text).as_tuple()
    digits = "".join(map(str, t.digits)).lstrip("0")
    stripped = 0 if not digits else -(t.exponent + len(digits) - len(digits.rstrip("0")))
    simple = "." in text and "e" not in text and "E" not in text
    if stripped <= 0 and not simple:
        value = int(decimal.Decimal(text))
        return "LONG" if -(1 << 63) <= value < (1 << 63) else "STRING"
    return "DOUBLE" if -t.exponent <= 16 else "STRING"


def tb_value_types(text):
    """{key: type} of the values of one JSON object's text (telemetry values or client
    attributes), as JsonConverter.parseProtoValues stores them; null values are skipped.
    Strings that NumberUtils.isParsable accepts are typed as numbers (type cast on)."""
    doc = json.loads(text, parse_float=_NumText, parse_int=_NumText)
    return _types_of(doc)


def _types_of(obj):
    out = {}
    for key, v in obj.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[key] = "BOOLEAN"
        elif isinstance(v, _NumText):
            out[key] = tb_number_type(v)
        elif isinstance(v, str):
            out[key] = tb_number_type(v) if _PARSABLE_RE.match(v) else "STRING"
        else:
            out[key] = "JSON"
    return out


def _json_payload(payload):
    """Parse an uplink payload as JSON; Invalid if ThingsBoard's parser would fail."""
    try:
        return json.loads(payload.decode("utf-8", "replace"))
    except (ValueError, RecursionError) as e:
        raise Invalid("invalid JSON: %s" % e) from None


# ---------------------------------------------------------------------------------------------
# OTA checksums as ThingsBoard computes them (§10): Guava hash bytes as lower-case hex

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def murmur3_32(data, seed=0):
    """MurmurHash3_x86_32 (Austin Appleby's reference algorithm) as an unsigned int."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M32
    nblocks = len(data) // 4
    for (k,) in struct.iter_unpack("<I", data[:nblocks * 4]):
        k = (k * c1) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        h ^= (k * c2) & _M32
        h = ((h << 13) | (h >> 19)) & _M32
        h = (h * 5 + 0xE6546B64) & _M32
    tail = data[nblocks * 4:]
    if tail:
        k = (int.from_bytes(tail, "little") * c1) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        h ^= (k * c2) & _M32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def _rotl64(x, r):
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)


def murmur3_128(data, seed=0):
    """MurmurHash3_x64_128 (reference algorithm); returns (h1, h2) as unsigned ints."""
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
    h1 = h2 = seed & _M64
    nblocks = len(data) // 16
    for k1, k2 in struct.iter_unpack("<QQ", data[:nblocks * 16]):
        h1 ^= (_rotl64((k1 * c1) & _M64, 31) * c2) & _M64
        h1 = (_rotl64(h1, 27) + h2) & _M64
        h1 = (h1 * 5 + 0x52DCE729) & _M64
        h2 ^= (_rotl64((k2 * c2) & _M64, 33) * c1) & _M64
        h2 = (_rotl64(h2, 31) + h1) & _M64
        h2 = (h2 * 5 + 0x38495AB5) & _M64
    tail = data[nblocks * 16:]
    if len(tail) > 8:
        h2 ^= (_rotl64((int.from_bytes(tail[8:], "little") * c2) & _M64, 33) * c1) & _M64
    if tail:
        h1 ^= (_rotl64((int.from_bytes(tail[:8], "little") * c1) & _M64, 31) * c2) & _M64
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1, h2 = _fmix64(h1), _fmix64(h2)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    return h1, h2


def tb_checksum(algorithm, data):
    """The checksum ThingsBoard stores for a package: Guava's HashCode.toString(), i.e. the
    hash bytes in Guava's order. For the 32-bit hashes that is little-endian
    (CRC32("123456789") = "2639f4cb"); for MURMUR3_128 it is h1 then h2, each little-endian."""
    data = bytes(data)
    algorithm = algorithm.upper()
    if algorithm in ("MD5", "SHA256", "SHA384", "SHA512"):
        return hashlib.new(algorithm.lower(), data).hexdigest()
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "little").hex()
    if algorithm == "MURMUR3_32":
        return murmur3_32(data).to_bytes(4, "little").hex()
    if algorithm == "MURMUR3_128":
        h1, h2 = murmur3_128(data)
        return (h1.to_bytes(8, "little") + h2.to_bytes(8, "little")).hex()
    raise ValueError("unknown checksum algorithm %r (one of %s)"
                     % (algorithm, ", ".join(OTA_ALGORITHMS)))


# ---------------------------------------------------------------------------------------------
# ThingsBoard payload rules

def parse_telemetry(doc):
    """The entries of a telemetry message (§4) as [(ts or None, values)]; Invalid where
    ThingsBoard closes the session. ts None means "server time"."""
    if isinstance(doc, dict):
        items = (doc,)
    elif isinstance(doc, list):
        items = doc
    else:
        raise Invalid("telemetry is neither an object nor an array")
    entries = []
    for item in items:
        if not isinstance(item, dict):
            raise Invalid("telemetry array element is not an object")
        # {ts, values} only when both keys are present; otherwise "ts" is a plain key.
        if "ts" in item and "values" in item:
            try:
                ts = gson_long(item["ts"])
            except ValueError as e:
                raise Invalid("bad ts: %s" % e) from None
            if not isinstance(item["values"], dict):
                raise Invalid("values is not an object")
            entries.append((ts, item["values"]))
        else:
            entries.append((None, item))
    return entries


def _request_keys(doc, name):
    """clientKeys / sharedKeys of an attribute request (§5): one comma-separated string."""
    if name not in doc:
        return []
    try:
        return java_split_comma(gson_string(doc[name]))
    except ValueError as e:
        raise Invalid("%s: %s" % (name, e)) from None


def _pem_body(pem):
    """The certificate as ThingsBoard keys it: PEM without header, footer and line breaks."""
    body = re.sub(r"-----(BEGIN|END) CERTIFICATE-----", "", pem)
    return "".join(body.split())


def _cert_der(pem):
    """DER bytes of a PEM certificate (or of a bare base64 body); ValueError if not base64."""
    try:
        return base64.b64decode(_pem_body(pem), validate=True)
    except binascii.Error as e:
        raise ValueError("not a PEM certificate: %s" % e) from None


def _random_alnum(n=20):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _stderr_line(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _now_ms():
    return time.time_ns() // 1_000_000


def _clock(ms):
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + ".%03d" % (ms % 1000)


def _topic_matches(filt, topic):
    """MQTT topic-filter matching with + and #."""
    f, t = filt.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


# ---------------------------------------------------------------------------------------------
# MQTT encoding

def _varint(n):
    out = bytearray()
    while True:
        n, b = n >> 7, n & 0x7F
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _publish_packet(topic, payload, qos, pid):
    t = topic.encode()
    var = struct.pack("!H", len(t)) + t + (struct.pack("!H", pid) if qos else b"")
    return bytes((0x30 | (qos << 1),)) + _varint(len(var) + len(payload)) + var + payload


def _fixed_header(buf, pos):
    """(first byte, remaining length, body offset) of the packet at pos, or None if the
    header is still incomplete; ProtocolError for a remaining length over 4 bytes."""
    n = len(buf)
    length, shift, i = 0, 0, pos + 1
    while True:
        if i >= n:
            return None
        b = buf[i]
        i += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            return buf[pos], length, i
        shift += 7
        if shift > 21:
            raise ProtocolError("remaining length longer than 4 bytes")


class _Reader:
    """Bounds-checked reader of MQTT fields in a packet body."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("packet too short")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def binary(self):
        return self.take(self.u16())

    def string(self):
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None

    def rest(self):
        return self.data[self.pos:]


# ---------------------------------------------------------------------------------------------
# Records and registry entries

class Message:
    """One PUBLISH received from a client. device is None for provisioning sessions;
    rejected is True when the message made the emulator close the session."""
    __slots__ = ("device", "topic", "payload", "qos", "recv_ms", "rejected")

    def __init__(self, device, topic, payload, qos, recv_ms, rejected):
        self.device, self.topic, self.payload = device, topic, payload
        self.qos, self.recv_ms, self.rejected = qos, recv_ms, rejected

    def json(self):
        """The payload parsed as JSON."""
        return json.loads(self.payload)

    def __repr__(self):
        return "Message(%r, %r, %r, qos=%d, recv_ms=%d%s)" % (
            self.device, self.topic, self.payload[:200], self.qos, self.recv_ms,
            ", rejected" if self.rejected else "")


class _Rpc:
    """A server-side RPC request and its first answer (§6)."""
    __slots__ = ("id", "method", "params", "raw", "expires", "response")

    def __init__(self, rid, method, params, raw, expires):
        self.id, self.method, self.params, self.raw = rid, method, params, raw
        self.expires = expires
        self.response = None

    def pending(self):
        return self.response is None and (self.expires is None or time.monotonic() < self.expires)


class _OtaPackage:
    __slots__ = ("kind", "title", "version", "tag", "data", "algorithm", "checksum")

    def __init__(self, kind, title, version, tag, data, algorithm, checksum):
        self.kind, self.title, self.version, self.tag = kind, title, version, tag
        self.data, self.algorithm, self.checksum = data, algorithm, checksum


class _RateLimit:
    """One tenant-profile limit, "capacity:seconds[,…]" (§2). ThingsBoard's buckets have
    refilled greedily (Bucket4j simple bandwidth) in some versions and all at once at the
    end of each period in others; this one refuses what either would refuse."""

    class _Window:
        __slots__ = ("cap", "period", "greedy", "last", "interval", "k")

        def __init__(self, cap, period):
            self.cap, self.period = cap, period
            self.greedy, self.last = float(cap), None      # refilled continuously
            self.interval, self.k = cap, None              # refilled per whole period

    def __init__(self, spec):
        self.windows = []
        for part in spec.split(","):
            cap, period = part.split(":")
            self.windows.append(_RateLimit._Window(int(cap), float(period)))
        self.start = None

    def take(self, n, now_ms):
        """Consume n; False (and nothing consumed) when a window has no room."""
        now = now_ms / 1000.0
        if self.start is None:
            self.start = now
        for w in self.windows:
            if w.last is not None:
                w.greedy = min(w.cap, w.greedy + (now - w.last) * w.cap / w.period)
            w.last = now
            k = int((now - self.start) // w.period)
            if k != w.k:
                w.k, w.interval = k, w.cap
        if any(w.greedy < n or w.interval < n for w in self.windows):
            return False
        for w in self.windows:
            w.greedy -= n
            w.interval -= n
        return True


class _Device:
    """A registered device: credentials, server-side state and what it sent."""

    def __init__(self, name):
        self.name = name
        self.token = self.client_id = self.username = self.password = None
        self.cert_der = None
        self.cred_keys = ()
        self.provisioned = False       # for "check pre-provisioned devices" profiles
        self.shared = {}
        self.client = {}
        self.session = None
        self.subs = {}                 # subscriptions of the current (or latest) session
        self.rpc_next = 0
        self.rpcs = {}
        self.ota = {}
        self.hold_puback = False
        self.close_on = None
        self.rate = None               # {"messages": _RateLimit, …} while limits are set
        self.usage = dict.fromkeys(RATE_KINDS, 0)   # what ThingsBoard counted for it
        self.protobuf = False          # device profile payload type PROTOBUF
        self.key_types = {}            # telemetry / client attribute key -> stored type
        self.type_changes = []         # (key, old type, new type)
        self.counts = dict.fromkeys(COUNTER_NAMES, 0)
        self.telemetry = []
        self.claims = []
        self.ota_requests = []
        self.downlinks = []
        self.gateway = False           # additionalInfo "gateway": true, read at CONNECT (§11)
        self.parent = None             # sub-devices: the gateway that created them
        self.type = None               # sub-devices: their device profile

    def credentials(self):
        """(credentialsType, credentialsValue) as ThingsBoard reports them (§9)."""
        if self.token is not None:
            return "ACCESS_TOKEN", self.token
        if self.cert_der is not None:
            return "X509_CERTIFICATE", base64.b64encode(self.cert_der).decode()
        return "MQTT_BASIC", {"clientId": self.client_id or "", "userName": self.username or "",
                              "password": self.password or ""}


# ---------------------------------------------------------------------------------------------
# One MQTT connection

class _Session:
    """One client connection: MQTT framing, the session's subscriptions and ThingsBoard's
    per-session state (topic families, OTA request bindings, in-flight downlinks)."""

    def __init__(self, emu, reader, writer, tls):
        self.emu, self.reader, self.writer = emu, reader, writer
        self.transport = writer.transport
        self.tls = tls
        sslobj = writer.get_extra_info("ssl_object") if tls else None
        # The client certificate (DER) presented over TLS, if any.
        self.peer_der = sslobj.getpeercert(binary_form=True) if sslobj else None
        self.connected = False         # CONNECT accepted
        self.closed = False
        self.device = None
        self.provision = False
        self.client_id = None
        self.subs = {}                 # filter -> granted QoS, in subscription order
        self.attr_push_topic = None
        self.rpc_request_base = None
        self.last_pid = 0
        self.inflight = {}             # server->client QoS 1 packet id -> topic
        self.held_acks = []
        self.stalled = False
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self.held_writes = []
        self.chunk_sizes = {}          # OTA reqId -> last chunk size (§10)
        self.ota_bound = {}            # OTA reqId -> package bound at its first request
        self.timers = []
        self.gateway = False           # the device was a gateway when it connected (§11)
        self.gw_devices = {}           # sub-devices "connected" in this session: name -> _Device
        self.gw_rate = None            # gateway rate limits of this session, once set
        self.gw_device_rate = {}       # per sub-device gateway limits: name -> limits

    # ---- I/O ----

    async def run(self):
        buf = bytearray()
        while not self.closed:
            if self.stalled:
                await self.unstalled.wait()
                continue
            used = self._handle_buffer(buf)
            if used:
                del buf[:used]
            if self.closed or self.stalled:
                continue
            data = await self.reader.read(262144)
            if not data:
                return
            buf += data

    def _handle_buffer(self, buf):
        """Handle every complete packet in buf; returns the number of bytes consumed."""
        pos = 0
        emu = self.emu
        with emu._cond:
            try:
                while not self.closed and not self.stalled:
                    hdr = _fixed_header(buf, pos)
                    if hdr is None:
                        break
                    first, length, start = hdr
                    if length > MAX_PACKET:
                        raise ProtocolError("packet of %d bytes" % length)
                    end = start + length
                    if end > len(buf):
                        break
                    self._packet(first, bytes(buf[start:end]))
                    pos = end
            except ProtocolError as e:
                self.close("protocol error: %s" % e)
            emu._cond.notify_all()
        return pos

    def write(self, data):
        if self.closed:
            return
        if self.stalled:
            self.held_writes.append(data)
        else:
            self.transport.write(data)

    def close(self, reason, abort=False):
        """End the session (idempotent): graceful close (FIN after pending writes) or abort."""
        if self.closed:
            return
        emu = self.emu
        with emu._cond:
            self.closed = True
            for t in self.timers:
                t.cancel()
            dev = self.device
            if dev is not None and dev.session is self:
                dev.session = None
            if dev is not None and self.connected:
                emu._consume_quietly(dev)                   # SessionEventMsg CLOSED
            emu._sessions.discard(self)
            emu._cond.notify_all()
        if self.connected:
            emu._event(dev.name if dev else "(provision)", "disconnected (%s)" % reason)
        if abort or self.stalled:
            self.transport.abort()
        else:
            self.transport.close()
            # A peer that never reads would keep the socket half-closed forever.
            emu._loop.call_later(CLOSE_GRACE_S, self.transport.abort)
        self.unstalled.set()

    def set_stalled(self, on):
        """Stop (or resume) reading from and writing to the socket, keeping it open."""
        if on == self.stalled or self.closed:
            return
        self.stalled = on
        if on:
            self.transport.pause_reading()
            self.unstalled.clear()
        else:
            for data in self.held_writes:
                self.transport.write(data)
            self.held_writes.clear()
            self.transport.resume_reading()
            self.unstalled.set()

    def puback(self, pid):
        if self.device is not None and self.device.hold_puback:
            self.held_acks.append(pid)
        else:
            self.write(b"\x40\x02" + struct.pack("!H", pid))
            if self.device is not None:
                self.device.counts["pubacks"] += 1

    def release_acks(self):
        acks, self.held_acks = self.held_acks, []
        for pid in acks:
            self.puback(pid)

    def publish(self, topic, payload):
        """Send a downlink at the QoS ThingsBoard would use for it (§2)."""
        if isinstance(payload, str):
            payload = payload.encode()
        qos = 1
        for filt, granted in self.subs.items():
            if _topic_matches(filt, topic):
                qos = granted
                break
        pid = 0
        if qos:
            pid = self.last_pid
            while True:
                pid = pid % 65535 + 1
                if pid not in self.inflight:
                    break
            self.last_pid = pid
            self.inflight[pid] = topic
        self.write(_publish_packet(topic, payload, qos, pid))
        if self.device is not None and self.emu._record:
            self.device.downlinks.append((topic, payload, qos))

    def send_rpc(self, rpc):
        body = rpc.raw if rpc.raw is not None else java_json({"method": rpc.method,
                                                                 "params": rpc.params})
        self.publish(self.rpc_request_base + str(rpc.id), body)
        self.emu._consume_quietly(self.device)              # RpcStatus.SENT or DELIVERED

    def later(self, delay, fn):
        """Run fn(), under the lock, after delay seconds unless the session has closed."""
        def run():
            if not self.closed:
                with self.emu._cond:
                    fn()
                    self.emu._cond.notify_all()
        self.timers.append(self.emu._loop.call_later(delay, run))

    # ---- packets ----

    def _packet(self, first, body):
        ptype = first >> 4
        if not self.connected:
            if ptype != CONNECT:
                raise ProtocolError("first packet is not CONNECT")
            self._connect(body)
        elif ptype == PUBLISH:
            self._publish(first, body)
        elif ptype == PUBACK:
            topic = self.inflight.pop(_Reader(body).u16(), None)
            if topic and self.rpc_request_base and topic.startswith(self.rpc_request_base):
                self.emu._consume_quietly(self.device)      # RpcStatus.DELIVERED
        elif ptype == SUBSCRIBE:
            self._subscribe(body)
        elif ptype == UNSUBSCRIBE:
            self._unsubscribe(body)
        elif ptype == PINGREQ:
            self.write(PINGRESP_PACKET)
        elif ptype == DISCONNECT:
            self.close("DISCONNECT")
        elif ptype == CONNECT:
            raise ProtocolError("second CONNECT")
        # ThingsBoard ignores every other packet type (PUBREC, PUBREL, PUBCOMP, …).

    def _connect(self, body):
        emu = self.emu
        r = _Reader(body)
        proto, level, flags = r.string(), r.byte(), r.byte()
        r.u16()                                  # keepalive: not enforced by ThingsBoard (§2)
        # ThingsBoard answers CONNACK with session-present = !cleanSession, even on refusal.
        sp = 0 if flags & 0x02 else 1
        if (proto, level) not in (("MQTT", 4), ("MQIsdp", 3)):
            self.write(bytes((0x20, 2, sp, RC_UNACCEPTABLE_PROTOCOL)))
            self.close("unsupported protocol %r level %d" % (proto, level))
            return
        client_id = r.string()
        if flags & 0x04:                         # will topic and message: ignored (§2)
            r.string()
            r.binary()
        username = r.string() if flags & 0x80 else None
        password = r.binary().decode("utf-8", "replace") if flags & 0x40 else None
        if level == 3 and not 1 <= len(client_id) <= 23:
            raise ProtocolError("MQTT 3.1 client id must have 1 to 23 characters")
        self.client_id = client_id

        dev = None
        if emu._refuse_code is not None:
            code = emu._refuse_code
        elif username == PROVISION or client_id == PROVISION:
            code = RC_ACCEPTED
            self.provision = True
        else:
            dev = emu._authenticate(self.peer_der, client_id, username, password)
            code = RC_ACCEPTED if dev else self._refusal_code(client_id, username, password)
        emu._connacks.append((client_id, username, code))
        if code != RC_ACCEPTED:
            self.write(bytes((0x20, 2, sp, code)))
            emu._event("-", "refused CONNECT client_id=%r username=%r: CONNACK %d"
                       % (client_id, username, code))
            self.close("refused")
            return
        if dev is not None and emu._consume(dev, 0, _now_ms()) is not None:
            # SessionEventMsg OPEN is a regular message: refused, the CONNACK says
            # CONNECTION_RATE_EXCEEDED, which MQTT 3.1.1 can only say as 3.
            dev.counts["rate_limited"] += 1
            self.write(bytes((0x20, 2, sp, RC_SERVER_UNAVAILABLE)))
            emu._event(dev.name, "refused CONNECT: rate limit exceeded")
            self.close("rate limited")
            return
        self.connected = True
        if dev is not None:
            if dev.session is not None:          # one session per device (§2)
                dev.session.close("session taken over")
            self.device = dev
            dev.session = self
            dev.subs = self.subs
            self.gateway = dev.gateway
            dev.counts["connects"] += 1
        self.write(bytes((0x20, 2, sp, RC_ACCEPTED)))
        emu._event(dev.name if dev else "(provision)",
                   "connected (client_id=%r%s)" % (client_id, ", TLS" if self.tls else ""))

    def _refusal_code(self, client_id, username, password):
        """ThingsBoard's CONNACK code for failed credentials, mapped for MQTT 3.1.1 (§3)."""
        if self.peer_der is not None:
            return RC_NOT_AUTHORIZED
        if username is not None or password is not None:
            return RC_NOT_AUTHORIZED             # "bad username or password"
        if client_id.strip():
            return RC_IDENTIFIER_REJECTED
        return RC_NOT_AUTHORIZED

    def _subscribe(self, body):
        r = _Reader(body)
        pid = r.u16()
        codes = []
        rpc_subscribed = False
        while r.pos < len(body):
            filt, qos = r.string(), r.byte()
            if qos > 2:
                raise ProtocolError("requested QoS %d" % qos)
            granted = min(qos, 1)
            if self.provision:
                if filt != PROVISION_RESPONSE:
                    granted = 0x80
            elif filt in ATTR_PUSH_FILTERS:
                self.attr_push_topic = ATTR_PUSH_FILTERS[filt]
                self.emu._consume_quietly(self.device)
            elif filt in RPC_REQUEST_FILTERS:
                self.rpc_request_base = RPC_REQUEST_FILTERS[filt]
                rpc_subscribed = True
                self.emu._consume_quietly(self.device)
            elif filt not in QOS_ONLY_FILTERS:
                granted = 0x80
            if granted != 0x80:
                self.subs[filt] = granted
            codes.append(granted)
        self.write(b"\x90" + _varint(2 + len(codes)) + struct.pack("!H", pid) + bytes(codes))
        if rpc_subscribed:
            # BURST strategy: every pending request is re-sent with its id (§6).
            for rpc in sorted(self.device.rpcs.values(), key=lambda x: x.id):
                if rpc.pending():
                    self.send_rpc(rpc)

    def _unsubscribe(self, body):
        r = _Reader(body)
        pid = r.u16()
        while r.pos < len(body):
            filt = r.string()
            if self.subs.pop(filt, None) is not None:
                if filt in ATTR_PUSH_FILTERS:
                    self.attr_push_topic = None
                elif filt in RPC_REQUEST_FILTERS:
                    self.rpc_request_base = None
        self.write(b"\xb0\x02" + struct.pack("!H", pid))

    def _publish(self, first, body):
        qos = (first >> 1) & 3
        if qos == 3:
            raise ProtocolError("PUBLISH with QoS 3")
        r = _Reader(body)
        topic = r.string()
        pid = r.u16() if qos else 0
        payload = r.rest()
        now = _now_ms()
        dev = self.device
        try:
            if len(body) > MAX_PAYLOAD:
                raise Invalid("message of %d bytes (topic, packet id and payload) exceeds %d"
                              % (len(body), MAX_PAYLOAD))
            if self.provision:
                after = self._provision_publish(topic, payload)
            else:
                if dev.close_on is not None and dev.close_on(topic, payload):
                    raise Invalid("close_on matched")
                if self.gateway and not _Gateway.rate_ok(self, topic, payload, now):
                    dev.counts["rate_limited"] += 1
                    raise Invalid("gateway rate limit exceeded")
                handler, arg = self._route(topic)
                if dev.protobuf and handler in _PAYLOAD_ADAPTOR_HANDLERS \
                        and topic.startswith("v1/"):
                    # The v1 topics go through the profile's payload adaptor
                    # (processDevicePublish): ProtoMqttAdaptor cannot parse JSON, an
                    # AdaptorException, and MQTT 3.1.1 without sendAckOnValidationException
                    # closes the session (no PUBACK). getSessionLimits too: it is parsed first.
                    dev.counts["payload_type_closes"] += 1
                    raise Invalid("the device profile expects protobuf payloads")
                # A gateway's session is governed by its own limits (checked above).
                points = None if self.gateway else self._rate_points(handler, topic, payload)
                if points is not None:
                    level = self.emu._consume(dev, points, now)
                    if level is not None:
                        dev.counts["rate_limited"] += 1
                        raise Invalid("%s rate limit exceeded" % level)
                after = handler(self, topic, payload, now, arg)
        except Invalid as e:
            self.emu._add_message(dev, topic, payload, qos, now, True)
            self.close("rejected %s: %s" % (topic, e))
            return
        self.emu._add_message(dev, topic, payload, qos, now, False)
        if after is _NO_ACK:
            return
        if qos:                              # QoS 2 is answered with PUBACK too (§2)
            self.puback(pid)
        if after is not None:
            after()

    def _rate_points(self, handler, topic, payload):
        """How DefaultTransportService counts an uplink against the rate limits: the number
        of data points for telemetry and attribute posts (0 = one regular message, as for
        every other kind), or None for what it does not count (getSessionLimits, answered
        in MqttTransportHandler itself; unknown topics; what is rejected before)."""
        if handler is _Session._telemetry:
            return sum(1 for _, values in parse_telemetry(_json_payload(payload))
                       for v in values.values() if v is not None)
        if handler is _Session._attributes:
            doc = _json_payload(payload)
            if not isinstance(doc, dict):
                raise Invalid("attributes are not a JSON object")
            return sum(1 for v in doc.values() if v is not None)
        if handler is _Session._client_rpc and topic.startswith("v1/devices/me/rpc/request/"):
            doc = _json_payload(payload)
            if (isinstance(doc, dict) and doc.get("method") == "getSessionLimits"
                    and self.emu._limits_report):
                return None
            return 0
        if handler in (_Session._attribute_request, _Session._rpc_response,
                       _Session._client_rpc, _Session._claim, _Session._ota):
            return 0
        return None

    # ---- uplink routing, in ThingsBoard's order (MqttTransportHandler.processDevicePublish) ----

    def _route(self, topic):
        if topic in _EXACT_ROUTES:
            return _EXACT_ROUTES[topic], None
        if topic.startswith("v1/gateway"):
            return _Session._gateway, None
        m = OTA_REQUEST_RE.match(topic)
        if m:
            return _Session._ota, m
        for prefix, handler, reply_base in _PREFIX_ROUTES:
            if topic.startswith(prefix):
                return handler, (prefix, reply_base)
        return _Session._unknown, None

    def _request_id(self, topic, prefix):
        try:
            return java_int(topic[len(prefix):])
        except ValueError as e:
            raise Invalid("request id: %s" % e) from None

    def _telemetry(self, topic, payload, now, _):
        entries = parse_telemetry(_json_payload(payload))
        emu, dev = self.emu, self.device
        store = dev.telemetry if emu._record else None
        count = 0
        for ts, values in entries:
            t = now if ts is None else ts
            for key, value in values.items():
                if value is None:                # JSON null values are dropped (§4)
                    continue
                count += 1
                if store is not None:
                    store.append((t, key, value))
            if ts is not None:
                emu._latency.append((ts, now))
        dev.counts["telemetry_msgs"] += 1
        dev.counts["telemetry_values"] += count
        text = payload.decode("utf-8", "replace")
        doc = json.loads(text, parse_float=_NumText, parse_int=_NumText)
        for ts, values in parse_telemetry(doc):
            self._record_types(_types_of(values))
        return None

    def _record_types(self, types):
        dev = self.device
        for key, t in types.items():
            old = dev.key_types.get(key)
            if old is not None and old != t:
                dev.type_changes.append((key, old, t))
            dev.key_types[key] = t

    def _attributes(self, topic, payload, now, _):
        doc = _json_payload(payload)
        if not isinstance(doc, dict):
            raise Invalid("attributes are not a JSON object")
        dev = self.device
        dev.client.update((k, v) for k, v in doc.items() if v is not None)
        dev.counts["attributes_msgs"] += 1
        self._record_types(tb_value_types(payload.decode("utf-8", "replace")))
        return None

    def _attribute_request(self, topic, payload, now, arg):
        prefix, reply_base = arg
        rid = self._request_id(topic, prefix)
        doc = _json_payload(payload)
        if not isinstance(doc, dict):
            raise Invalid("attribute request is not a JSON object")
        client_keys = _request_keys(doc, "clientKeys")
        shared_keys = _request_keys(doc, "sharedKeys")
        dev = self.device
        dev.counts["attribute_requests"] += 1
        if not client_keys and not shared_keys:     # nothing named: everything (§5)
            client, shared = dict(dev.client), dict(dev.shared)
        else:
            client = {k: dev.client[k] for k in client_keys if k in dev.client}
            shared = {k: dev.shared[k] for k in shared_keys if k in dev.shared}
        answer = {}
        if client:
            answer["client"] = client
        if shared:
            answer["shared"] = shared
        if rid < 0:                              # accepted, but never answered (§1)
            return None
        return lambda: self.publish(reply_base + str(rid), java_json(answer))

    def _rpc_response(self, topic, payload, now, arg):
        rid = self._request_id(topic, arg[0])
        dev = self.device
        dev.counts["rpc_responses"] += 1
        rpc = dev.rpcs.get(rid)
        if rpc is not None and rpc.pending():    # only the first answer counts (§6)
            rpc.response = payload
        return None

    def _client_rpc(self, topic, payload, now, arg):
        prefix, reply_base = arg
        rid = self._request_id(topic, prefix)
        doc = _json_payload(payload)
        if not isinstance(doc, dict) or "method" not in doc:
            raise Invalid("client RPC without a method")
        try:
            method = gson_string(doc["method"])
        except ValueError as e:
            raise Invalid("method: %s" % e) from None
        params = doc.get("params")
        self.device.counts["client_rpcs"] += 1
        reply_topic = reply_base + str(rid)
        emu = self.emu
        if (method == "getSessionLimits" and prefix == "v1/devices/me/rpc/request/"
                and emu._limits_report):
            # Built into the transport since 3.8 (v1 topic only): never reaches the rule chain.
            answer = java_json(emu.gateway_session_limits() if self.gateway
                               else emu.session_limits())
            return lambda: self.publish(reply_topic, answer)
        return lambda: emu._answer_client_rpc(self, reply_topic, method, params)

    def _claim(self, topic, payload, now, _):
        secret, duration = "", 0                 # an empty payload is allowed (§8)
        if payload:
            doc = _json_payload(payload)
            if not isinstance(doc, dict):
                raise Invalid("claim is not a JSON object")
            try:
                if "secretKey" in doc:
                    secret = gson_string(doc["secretKey"])
                if "durationMs" in doc:
                    duration = gson_long(doc["durationMs"])
            except ValueError as e:
                raise Invalid("claim: %s" % e) from None
        dev = self.device
        dev.claims.append((secret, duration))
        dev.counts["claims"] += 1
        return None

    def _ota(self, topic, payload, now, m):
        kind, req = m.group(1), m.group(2)
        try:
            chunk = java_int(m.group(3))
            text = payload.decode("utf-8", "replace")
            size = java_int(text) if text else 0
        except ValueError as e:
            raise Invalid("OTA request: %s" % e) from None
        # A positive size is remembered per reqId; anything else reuses it, or 0 (§10).
        if size > 0:
            self.chunk_sizes[req] = size
        else:
            size = self.chunk_sizes.get(req, 0)
        if size > OTA_MAX_CHUNK:
            self.publish(OTA_ERROR_TOPIC, b"PAYLOAD_TOO_LARGE")
            raise Invalid("chunk size %d > %d" % (size, OTA_MAX_CHUNK))
        # ThingsBoard keeps one reqId map per session for firmware and software alike.
        pkg = self.ota_bound.get(req) or self.device.ota.get(kind)
        if pkg is None:
            self.publish(OTA_ERROR_TOPIC, b"NOT_FOUND")
            raise Invalid("no %s package assigned" % kind)
        self.ota_bound[req] = pkg
        dev = self.device
        dev.ota_requests.append((kind, int(req), chunk, size))
        dev.counts["ota_requests"] += 1
        if size <= 0:
            data = pkg.data
        else:
            data = pkg.data[size * chunk:size * chunk + size]
        reply = "v2/%s/response/%s/chunk/%d" % (kind, req, chunk)
        return lambda: self.publish(reply, data)

    def _gateway(self, topic, payload, now, _):
        self.device.counts["gateway_msgs"] += 1
        if not self.gateway:
            # Not a gateway at CONNECT: ThingsBoard logs the message and never acknowledges it.
            return _NO_ACK
        return _Gateway.publish(self, topic, payload, now)

    def _proto(self, topic, payload, now, _):
        raise Invalid("protobuf payloads are not emulated")

    def _unknown(self, topic, payload, now, _):
        self.device.counts["unknown_msgs"] += 1     # PUBACKed and dropped (§2)
        return None

    # ---- provisioning (§9) ----

    def _provision_publish(self, topic, payload):
        emu = self.emu
        if topic != PROVISION_REQUEST:
            return self._provision_abort("provision session publishes to %r" % topic)
        doc = _json_payload(payload)
        if not isinstance(doc, dict):
            raise Invalid("provision request is not a JSON object")
        if "provisionDeviceKey" not in doc or "provisionDeviceSecret" not in doc:
            return self._provision_abort("provision request without key or secret")
        ctype = doc.get("credentialsType", "ACCESS_TOKEN")
        if ctype not in CREDENTIALS_TYPES:
            return self._provision_abort("unknown credentialsType %r" % (ctype,))
        answer = emu._provision(doc)
        emu._provisions.append((doc, answer))
        self.later(emu.provision_close_s, lambda: self.close("provisioning done"))
        return lambda: self.publish(PROVISION_RESPONSE, java_json(answer))

    def _provision_abort(self, reason):
        """PUBACK, then close, with no answer."""
        self.later(0, lambda: self.close(reason))
        return None


_RPC_RESPONSE_PREFIXES = ("v1/devices/me/rpc/response/", "v2/r/res/", "v2/r/res/j/")

# A sentinel returned by handlers whose message ThingsBoard never acknowledges.
_NO_ACK = object()

_EXACT_ROUTES = {
    "v1/devices/me/attributes": _Session._attributes,
    "v1/devices/me/telemetry": _Session._telemetry,
    "v1/devices/me/claim": _Session._claim,
    "v2/t": _Session._telemetry,
    "v2/t/j": _Session._telemetry,
    "v2/t/p": _Session._proto,
    "v2/a": _Session._attributes,
    "v2/a/j": _Session._attributes,
    "v2/a/p": _Session._proto,
}
# What MqttTransportHandler parses with the device profile's payload adaptor on v1 topics.
_PAYLOAD_ADAPTOR_HANDLERS = (_Session._telemetry, _Session._attributes, _Session._attribute_request,
                             _Session._rpc_response, _Session._client_rpc, _Session._claim)
# (prefix, handler, reply topic base); the /j and /p forms before the plain v2 forms.
_PREFIX_ROUTES = (
    ("v1/devices/me/attributes/request/", _Session._attribute_request,
     "v1/devices/me/attributes/response/"),
    ("v1/devices/me/rpc/response/", _Session._rpc_response, None),
    ("v1/devices/me/rpc/request/", _Session._client_rpc, "v1/devices/me/rpc/response/"),
    ("v2/r/res/j/", _Session._rpc_response, None),
    ("v2/r/res/p/", _Session._proto, None),
    ("v2/r/res/", _Session._rpc_response, None),
    ("v2/r/req/j/", _Session._client_rpc, "v2/r/res/j/"),
    ("v2/r/req/p/", _Session._proto, None),
    ("v2/r/req/", _Session._client_rpc, "v2/r/res/"),
    ("v2/a/req/j/", _Session._attribute_request, "v2/a/res/j/"),
    ("v2/a/req/p/", _Session._proto, None),
    ("v2/a/req/", _Session._attribute_request, "v2/a/res/"),
)


# ---------------------------------------------------------------------------------------------
# Gateway API (§11): one gateway session carries many devices, named in each message

GW_CONNECT = "v1/gateway/connect"
GW_DISCONNECT = "v1/gateway/disconnect"
GW_TELEMETRY = "v1/gateway/telemetry"
GW_ATTRIBUTES = "v1/gateway/attributes"
GW_ATTRIBUTES_REQUEST = "v1/gateway/attributes/request"
GW_ATTRIBUTES_RESPONSE = "v1/gateway/attributes/response"
GW_RPC = "v1/gateway/rpc"
GW_CLAIM = "v1/gateway/claim"
GW_DEFAULT_TYPE = "default"
GW_LIMIT_NAMES = ("messages", "telemetryMessages", "telemetryDataPoints")


class _AckAndClose(Exception):
    """A RuntimeException in MqttTransportHandler.handleGatewayPublishMsg: ThingsBoard
    PUBACKs the message (IMPLEMENTATION_SPECIFIC, a plain PUBACK in MQTT 3.1.1) and then
    closes the gateway's connection."""


def _gw_object(payload):
    """The payload as a JSON object. Unparseable JSON is an AdaptorException (close, no
    PUBACK); valid JSON of another shape is a JsonSyntaxException (PUBACK, then close)."""
    doc = _json_payload(payload)
    if not isinstance(doc, dict):
        raise _AckAndClose("not a JSON object")
    return doc


def _gw_device_name(doc):
    """The "device" member as getAsString() reads it; a missing or empty name throws."""
    try:
        name = gson_string(doc["device"])
    except (KeyError, ValueError) as e:
        raise _AckAndClose("device name: %s" % e) from None
    if not name:
        raise _AckAndClose("empty device name")
    return name


class _Gateway:
    """The gateway side of a session (AbstractGatewaySessionHandler): every handler runs
    on the loop thread under the emulator's lock and returns what _Session._publish
    expects (None, a callable run after the PUBACK, or _NO_ACK)."""

    @staticmethod
    def publish(sess, topic, payload, now):
        handler = _GATEWAY_ROUTES.get(topic)
        if handler is None:
            return None              # unknown v1/gateway/… topic: PUBACK (TOPIC_NAME_INVALID)
        try:
            return handler(sess, payload, now)
        except _AckAndClose as e:
            reason = "rejected %s: %s" % (topic, e)
            return lambda: sess.later(0, lambda: sess.close(reason))

    @staticmethod
    def device(sess, name, dtype=GW_DEFAULT_TYPE):
        """checkDeviceConnected: the sub-device, created (with its profile) if ThingsBoard
        does not know it, and connected in this session if it was not. An existing
        device keeps its profile."""
        emu = sess.emu
        dev = emu._devices.get(name)
        if dev is None:
            dev = emu._devices[name] = _Device(name)
            dev.type = dtype
            emu._event(sess.device.name, "created device %r (type %r)" % (name, dtype))
        dev.parent = sess.device
        if name not in sess.gw_devices:
            sess.gw_devices[name] = dev
            dev.counts["connects"] += 1
            emu._event(name, "connected through gateway %s" % sess.device.name)
            # Subscribing the sub-device's session re-sends pending RPCs (BURST, §6).
            for rpc in sorted(dev.rpcs.values(), key=lambda x: x.id):
                if rpc.pending():
                    _Gateway.send_rpc(sess, dev, rpc)
        return dev

    @staticmethod
    def send_rpc(sess, dev, rpc):
        if rpc.raw is not None:
            body = rpc.raw
        else:
            body = java_json({"device": dev.name, "data": {
                "id": rpc.id, "method": rpc.method, "params": rpc.params}})
        sess.publish(GW_RPC, body)
        if sess.emu._record:
            dev.downlinks.append((GW_RPC, body if isinstance(body, bytes) else body.encode(), 1))

    @staticmethod
    def session_of(dev):
        """The gateway session the sub-device is connected in, or None: ThingsBoard holds a
        session for a sub-device only between its connect and the end of that gateway
        session (or its disconnect)."""
        gw = dev.parent
        sess = gw.session if gw is not None else None
        if sess is None or not sess.gateway or dev.name not in sess.gw_devices:
            return None
        return sess

    @staticmethod
    def push_attributes(dev, data):
        """A shared-attribute push (or {"deleted": […]}) to a connected sub-device."""
        sess = _Gateway.session_of(dev)
        if sess is not None:
            body = java_json({"device": dev.name, "data": data})
            sess.publish(GW_ATTRIBUTES, body)
            if sess.emu._record:
                dev.downlinks.append((GW_ATTRIBUTES, body.encode(), 1))

    @staticmethod
    def queue_rpc(dev, rpc):
        sess = _Gateway.session_of(dev)
        if sess is not None:
            _Gateway.send_rpc(sess, dev, rpc)

    # ---- uplinks ----

    @staticmethod
    def connect(sess, payload, now):
        doc = _gw_object(payload)
        name = _gw_device_name(doc)
        dtype = doc.get("type", GW_DEFAULT_TYPE)
        try:
            dtype = gson_string(dtype) if dtype is not None else GW_DEFAULT_TYPE
        except ValueError as e:
            raise _AckAndClose("type: %s" % e) from None
        _Gateway.device(sess, name, dtype or GW_DEFAULT_TYPE)
        return None

    @staticmethod
    def disconnect(sess, payload, now):
        name = _gw_device_name(_gw_object(payload))
        if sess.gw_devices.pop(name, None) is not None:
            sess.emu._event(name, "disconnected from gateway %s" % sess.device.name)
        return None

    @staticmethod
    def _per_device(sess, payload, want, what):
        """The {device: member} entries of a telemetry / attributes / claim message whose
        member has the wanted JSON type; the others are skipped as ThingsBoard does. None
        left: PUBACK and close."""
        doc = _gw_object(payload)
        entries = [(name, v) for name, v in doc.items() if isinstance(v, want)]
        if not entries:
            raise _AckAndClose("no device with a JSON %s" % what)
        return entries

    @staticmethod
    def telemetry(sess, payload, now):
        emu = sess.emu
        parsed = []
        # ThingsBoard converts each device's array in its own callback, so the devices before
        # a bad one may or may not be stored when the connection closes; here none is, and a
        # client must not count on either (it sends the whole message again).
        for name, arr in _Gateway._per_device(sess, payload, list, "array"):
            parsed.append((name, parse_telemetry(arr)))   # Invalid: close, no PUBACK
        for name, entries in parsed:
            dev = _Gateway.device(sess, name)
            count = 0
            for ts, values in entries:
                t = now if ts is None else ts
                for key, value in values.items():
                    if value is None:
                        continue
                    count += 1
                    if emu._record:
                        dev.telemetry.append((t, key, value))
                if ts is not None:
                    emu._latency.append((ts, now))
            dev.counts["telemetry_msgs"] += 1
            dev.counts["telemetry_values"] += count
        return None

    @staticmethod
    def attributes(sess, payload, now):
        for name, attrs in _Gateway._per_device(sess, payload, dict, "object"):
            dev = _Gateway.device(sess, name)
            dev.client.update((k, v) for k, v in attrs.items() if v is not None)
            dev.counts["attributes_msgs"] += 1
        return None

    @staticmethod
    def claim(sess, payload, now):
        for name, body in _Gateway._per_device(sess, payload, dict, "object"):
            dev = _Gateway.device(sess, name)
            try:
                secret = gson_string(body["secretKey"]) if "secretKey" in body else ""
                duration = gson_long(body["durationMs"]) if "durationMs" in body else 0
            except ValueError as e:
                # Logged by ThingsBoard; the message is still acknowledged.
                emu = sess.emu
                emu._event(name, "claim not converted: %s" % e)
                continue
            dev.claims.append((secret, duration))
            dev.counts["claims"] += 1
        return None

    @staticmethod
    def attribute_request(sess, payload, now):
        doc = _gw_object(payload)
        try:
            rid = java_int(gson_string(doc["id"]))
            name = _gw_device_name(doc)
            client = doc["client"]
            if not isinstance(client, (bool, str)):
                raise ValueError("client is not a boolean")
            client = client if isinstance(client, bool) else client.lower() == "true"
            if "key" in doc:
                keys = [gson_string(doc["key"])]
            elif isinstance(doc.get("keys"), list):
                keys = list(dict.fromkeys(gson_string(k) for k in doc["keys"]))
            else:
                raise ValueError("neither key nor keys")
        except (KeyError, ValueError) as e:
            raise _AckAndClose("attribute request: %s" % e) from None
        dev = _Gateway.device(sess, name)
        dev.counts["attribute_requests"] += 1
        store = dev.client if client else dev.shared
        found = {k: store[k] for k in keys if k in store}
        answer = {"id": rid, "device": name}
        if len(keys) == 1 and found:
            answer["value"] = found[keys[0]]
        elif found:
            answer["values"] = found
        return lambda: sess.publish(GW_ATTRIBUTES_RESPONSE, java_json(answer))

    @staticmethod
    def rpc_response(sess, payload, now):
        doc = _gw_object(payload)
        name = _gw_device_name(doc)
        dev = _Gateway.device(sess, name)
        try:
            rid = java_int(gson_string(doc["id"]))
            data = doc["data"]
        except (KeyError, ValueError) as e:
            # Thrown in the device's callback: logged, never acknowledged, session kept.
            sess.emu._event(name, "RPC reply not converted: %s" % e)
            return _NO_ACK
        dev.counts["rpc_responses"] += 1
        rpc = dev.rpcs.get(rid)
        if rpc is not None and rpc.pending():
            rpc.response = java_json(data).encode()
        return None

    @staticmethod
    def rpc_answers(messages, device, rid):
        """The "data" of every accepted v1/gateway/rpc reply for device's RPC rid."""
        out = []
        for m in messages:
            if m.rejected:
                continue
            try:
                doc = m.json()
            except ValueError:
                continue
            if (isinstance(doc, dict) and doc.get("device") == device and doc.get("id") == rid
                    and "data" in doc):
                out.append(doc["data"])
        return out

    # ---- rate limits (gatewayRateLimits, and the per-device gateway limits) ----

    @staticmethod
    def rate_ok(sess, topic, payload, now):
        emu = sess.emu
        if emu._gw_limits is None:
            return True
        if sess.gw_rate is None:
            sess.gw_rate = {k: _RateLimit(v) for k, v in emu._gw_limits.items() if v}
        r = sess.gw_rate
        if "messages" in r and not r["messages"].take(1, now):
            return False
        if topic == GW_TELEMETRY:
            try:
                per_device = [(name, sum(1 for _, values in parse_telemetry(arr)
                                         for v in values.values() if v is not None))
                              for name, arr in _json_payload(payload).items()
                              if isinstance(arr, list)]
            except (Invalid, AttributeError):
                return True          # the handler rejects it for what it is
        elif topic in ("v1/devices/me/telemetry", "v2/t", "v2/t/j"):
            try:
                per_device = [(None, sum(1 for _, values in parse_telemetry(_json_payload(payload))
                                         for v in values.values() if v is not None))]
            except Invalid:
                return True
        else:
            per_device = None
        if per_device is not None:
            if "telemetryMessages" in r and not r["telemetryMessages"].take(1, now):
                return False
            n = sum(c for _, c in per_device)
            if "telemetryDataPoints" in r and not r["telemetryDataPoints"].take(n, now):
                return False
        if emu._gw_device_limits is None or not topic.startswith("v1/gateway/"):
            return True
        names = [n for n, _ in per_device] if per_device is not None else []
        if per_device is None:
            try:
                doc = _json_payload(payload)
                names = ([doc["device"]] if "device" in doc else list(doc)) \
                    if isinstance(doc, dict) else []
            except Invalid:
                return True
        counts = dict(per_device or [])
        for name in names:
            if not isinstance(name, str):
                continue
            limits = sess.gw_device_rate.setdefault(name, {
                k: _RateLimit(v) for k, v in emu._gw_device_limits.items() if v})
            if "messages" in limits and not limits["messages"].take(1, now):
                return False
            if name in counts:
                if ("telemetryMessages" in limits
                        and not limits["telemetryMessages"].take(1, now)):
                    return False
                if ("telemetryDataPoints" in limits
                        and not limits["telemetryDataPoints"].take(counts[name], now)):
                    return False
        return True


_GATEWAY_ROUTES = {
    GW_CONNECT: _Gateway.connect,
    GW_DISCONNECT: _Gateway.disconnect,
    GW_TELEMETRY: _Gateway.telemetry,
    GW_ATTRIBUTES: _Gateway.attributes,
    GW_ATTRIBUTES_REQUEST: _Gateway.attribute_request,
    GW_RPC: _Gateway.rpc_response,
    GW_CLAIM: _Gateway.claim,
}


class _GatewayControl:
    """The Emulator's gateway-mode actions and observations (a mixin of Emulator)."""

    _gw_limits = None
    _gw_device_limits = None

    def set_gateway(self, name, on=True):
        """Flag a registered device as a gateway ("Is gateway", additionalInfo "gateway":
        true). ThingsBoard reads the flag at CONNECT: a session already open keeps what it
        had."""
        def op():
            self._dev(name).gateway = bool(on)
        self._call(op)

    def subdevices(self, gateway):
        """{name: device profile} of every device the gateway created or announced."""
        with self._cond:
            gw = self._dev(gateway)
            return {d.name: d.type for d in self._devices.values() if d.parent is gw}

    def gateway_connected(self, gateway):
        """Names of the sub-devices connected in the gateway's current session, in the order
        they were announced (empty when the gateway is offline)."""
        with self._cond:
            sess = self._dev(gateway).session
            return list(sess.gw_devices) if sess is not None and sess.gateway else []

    def gateway_session_limits(self):
        """The getSessionLimits answer of a gateway session (GatewaySessionLimits):
        rateLimits are each sub-device's limits, gatewayRateLimits the session's."""
        limits = self.session_limits()
        limits["rateLimits"] = {k: v for k, v in (self._gw_device_limits or {}).items() if v}
        limits["gatewayRateLimits"] = {k: v for k, v in (self._gw_limits or {}).items() if v}
        return limits

    def set_gateway_rate_limits(self, messages=None, telemetry_messages=None,
                                telemetry_datapoints=None, device_messages=None,
                                device_telemetry_messages=None,
                                device_telemetry_datapoints=None):
        """The tenant profile's gateway limits, "capacity:seconds,…" each, None for none:
        transportGateway{Msg,TelemetryMsg,TelemetryDataPoints}RateLimit govern the whole
        gateway session, transportGatewayDevice…RateLimit each sub-device's share of it.
        A gateway that exceeds one has its session closed (counted as rate_limited on the
        gateway). Device-mode limits (set_rate_limits) do not apply to a gateway session."""
        def op():
            g = dict(zip(GW_LIMIT_NAMES, (messages, telemetry_messages, telemetry_datapoints)))
            d = dict(zip(GW_LIMIT_NAMES, (device_messages, device_telemetry_messages,
                                          device_telemetry_datapoints)))
            self._gw_limits = g if any(g.values()) or any(d.values()) else None
            self._gw_device_limits = d if any(d.values()) else None
            for sess in self._sessions:
                sess.gw_rate = None
                sess.gw_device_rate = {}
        self._call(op)


# ---------------------------------------------------------------------------------------------
# The emulator


class Emulator(_GatewayControl):
    """A ThingsBoard MQTT transport for tests (see the module docstring).

    host/port: plain MQTT listener (port 0 = pick a free one; read .port after start()).
    tls: dict(certfile, keyfile, cafile=None, port=0) to also listen for MQTTS; with cafile
        a client certificate is requested (optional) and verified against it.
    record: keep every message, telemetry value and downlink (False: counters only, for
        long benchmarks).
    latency_samples: bound on the (ts, recv_ms) samples kept (None = unlimited).
    log: one line per message / connect / disconnect: True writes them to stderr, a
        callable is given each line.
    """

    def __init__(self, host="127.0.0.1", port=0, tls=None, record=True, latency_samples=None,
                 log=False):
        self.host = host
        self._port_req = port
        self._tls = dict(tls) if tls else None
        self._record = record
        if log is True:
            log = _stderr_line
        self._log = log or None
        self.port = None
        self.tls_port = None
        self.control_port = None
        #: Seconds after a provisioning answer before the server closes that connection (§9).
        self.provision_close_s = 60.0
        #: Seconds before an unanswered client-side RPC gets {"error":"timeout"} (§7);
        #: None = never.
        self.client_rpc_timeout_s = 60.0
        self._cond = threading.Condition(threading.RLock())
        self._devices = {}
        self._creds = {}               # credentials id (as ThingsBoard keys them) -> _Device
        self._profiles = {}
        self._provisions = []
        self._connacks = []
        self._messages = []
        self._latency = deque(maxlen=latency_samples)
        self._sessions = set()
        self._refuse_code = None
        self._refuse_tcp = False
        self._client_rpc_fn = None
        self._limits = None
        self._tenant_limits = {}
        self._tenant_rate = None
        self._limits_inflight = None
        self._limits_report = True
        self._loop = None
        self._thread = None
        self._servers = []
        self._tls_ctx = None
        self._tls_sock = None

    # ---- lifecycle ----

    def start(self):
        """Start listening (in a daemon thread); returns once the sockets accept."""
        if self._tls:
            self._tls_ctx = self._make_tls_context(self._tls)
        self._loop = asyncio.new_event_loop()
        ready = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="tb-emulator",
                                        daemon=True)
        self._thread.start()
        ready.result(timeout=10)
        return self

    def stop(self):
        """Close every connection and listener and join the thread."""
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def _run(self, ready):
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._loop_exception)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as e:
            ready.set_exception(e)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self):
        srv = await asyncio.start_server(self._accept, self.host, self._port_req,
                                         limit=MAX_PACKET * 2)
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if self._tls_ctx is not None:
            self._tls_sock = socket.create_server((self.host, self._tls.get("port", 0)))
            self._tls_sock.setblocking(False)
            self.tls_port = self._tls_sock.getsockname()[1]
            asyncio.get_running_loop().create_task(self._accept_tls())

    async def _accept_tls(self):
        """The MQTTS listener. It accepts TCP itself so that refuse_tcp() closes connections
        before the TLS handshake, as it does on the plain port."""
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._tls_sock)
            if self._refuse_tcp:
                conn.close()
            else:
                loop.create_task(self._tls_handshake(conn))

    async def _tls_handshake(self, conn):
        loop = asyncio.get_running_loop()
        protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader(MAX_PACKET * 2, loop),
                                                lambda r, w: self._accept(r, w, True), loop)
        try:
            await loop.connect_accepted_socket(lambda: protocol, conn, ssl=self._tls_ctx,
                                               ssl_handshake_timeout=10)
        except OSError as e:        # SSLError, resets and the handshake timeout
            self._event("-", "TLS handshake failed: %s" % (e or type(e).__name__))
            conn.close()

    async def _shutdown(self):
        for srv in self._servers:
            srv.close()
        if self._tls_sock is not None:
            self._tls_sock.close()
        with self._cond:
            for sess in list(self._sessions):
                sess.close("emulator stopped", abort=True)
        for srv in self._servers:
            await srv.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _loop_exception(self, loop, context):
        # Resets and failed handshakes of test clients are expected; anything else is a bug.
        exc = context.get("exception")
        # Connections still being set up when the emulator stops are cancelled: not a bug.
        if self._log or (exc is not None and
                         not isinstance(exc, (OSError, asyncio.CancelledError))):
            sys.stderr.write("tb_emulator: %s: %r\n" % (context.get("message"), exc))

    @staticmethod
    def _make_tls_context(tls):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(tls["certfile"], tls["keyfile"])
        if tls.get("cafile"):
            # ThingsBoard requests a client certificate but does not require one (§3).
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(tls["cafile"])
        return ctx

    async def _accept(self, reader, writer, tls=False):
        if self._refuse_tcp:
            writer.transport.abort()
            return
        sess = _Session(self, reader, writer, tls)
        with self._cond:
            self._sessions.add(sess)
        reason = "closed by client"
        try:
            await sess.run()
        except OSError as e:
            reason = "connection error: %s" % e
        except Exception:      # a bug in the emulator: show it, drop the connection
            traceback.print_exc()
            reason = "emulator error"
        finally:
            sess.close(reason, abort=True)

    def _call(self, fn, *args):
        """Run fn(*args) on the loop thread under the lock and return its result."""
        loop = self._loop
        if (loop is None or not loop.is_running()
                or threading.current_thread() is self._thread):
            with self._cond:
                result = fn(*args)
                self._cond.notify_all()
                return result
        fut = concurrent.futures.Future()

        def run():
            try:
                with self._cond:
                    fut.set_result(fn(*args))
                    self._cond.notify_all()
            except BaseException as e:
                fut.set_exception(e)
        loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    def _event(self, who, what):
        if self._log:
            self._log("%s  %s  %s" % (_clock(_now_ms()), who, what))

    # ---- registry ----

    def add_device(self, name, token=None, client_id=None, username=None, password=None,
                   cert_pem=None, protobuf=False):
        """Register a device with one kind of credentials: token; or MQTT basic (client_id
        and/or username, optional password); or an X.509 certificate (PEM). Adding an
        existing name replaces its credentials and, as ThingsBoard does, closes its session.
        ValueError for combinations ThingsBoard rejects or credentials already in use.
        protobuf: the device's profile has the MQTT transport with payload type PROTOBUF,
        so a JSON upload on a v1 topic (telemetry, attributes, attribute requests, RPC)
        closes the session."""
        dev = self._call(self._register, name, token, client_id, username, password, cert_pem)
        self._call(setattr, dev, "protobuf", bool(protobuf))
        return dev

    def _register(self, name, token, client_id, username, password, cert_pem):
        basic = client_id or username or password
        if sum(map(bool, (token, basic, cert_pem))) != 1:
            raise ValueError("%s: give exactly one of token, basic credentials, cert_pem" % name)
        if basic:
            if not (client_id or username):
                raise ValueError("%s: basic credentials need a client_id or a username" % name)
            if client_id and password and not username:
                raise ValueError("%s: client_id + password without username" % name)
        # The credentials ids ThingsBoard stores (formatSimpleMqttCredentials): tokens and
        # username-only basic credentials share one namespace.
        if token:
            key = ("id", token)
        elif cert_pem:
            key = ("x509", _cert_der(cert_pem))
        elif client_id and username:
            key = ("pair", client_id, username)
        elif client_id:
            key = ("cid", client_id)
        else:
            key = ("id", username)
        dev = self._devices.get(name)
        if self._creds.get(key, dev) is not dev:
            raise ValueError("%s: credentials already used by %s" % (name, self._creds[key].name))
        if dev is None:
            dev = self._devices[name] = _Device(name)
        else:
            for k in dev.cred_keys:
                del self._creds[k]
            if dev.session is not None:
                dev.session.close("credentials changed")
        dev.token = token or None
        dev.client_id, dev.username, dev.password = client_id, username, password
        dev.cert_der = key[1] if key[0] == "x509" else None
        dev.cred_keys = (key,)
        self._creds[key] = dev
        return dev

    def _authenticate(self, peer_der, client_id, username, password):
        """The device a CONNECT authenticates as, or None (§3)."""
        if peer_der is not None:                 # X.509: username/password are ignored
            return self._creds.get(("x509", peer_der))
        if not username:
            return self._creds.get(("cid", client_id))
        dev = self._creds.get(("pair", client_id, username))
        if dev is not None:                      # a password mismatch here is final
            return dev if self._password_ok(dev, password) else None
        dev = self._creds.get(("id", username))
        if dev is None or dev.token is not None:  # an access token ignores the rest
            return dev
        return dev if self._password_ok(dev, password) else None

    @staticmethod
    def _password_ok(dev, password):
        return not dev.password or dev.password == password

    def add_provision_profile(self, key, secret, allow_create=True):
        """A device profile with provisioning enabled. allow_create=True: strategy "allow
        to create new devices"; False: "check pre-provisioned devices" (the device must be
        registered already and is provisioned once, keeping its credentials)."""
        with self._cond:
            self._profiles[key] = (secret, allow_create)

    def _provision(self, req):
        """ThingsBoard's answer to a provisioning request (§9); registers the device."""
        try:
            key, secret, name, token, client_id, username, password, cert = (
                gson_string(req[f]) if req.get(f) is not None else ""
                for f in ("provisionDeviceKey", "provisionDeviceSecret", "deviceName", "token",
                          "clientId", "username", "password", "hash"))
        except ValueError:
            return PROVISION_FAILURE
        profile = self._profiles.get(key)
        if not key or not secret or profile is None or profile[0] != secret:
            return PROVISION_NOT_FOUND
        if not name:                             # no name: ThingsBoard makes one up
            name = _random_alnum()
        elif not name.strip():
            return PROVISION_FAILURE
        name = name.strip()
        if not profile[1]:
            dev = self._devices.get(name)
            if dev is None or dev.provisioned:
                return PROVISION_FAILURE
        elif name in self._devices:
            return PROVISION_FAILURE
        else:
            ctype = req.get("credentialsType", "ACCESS_TOKEN")
            creds = dict(token=None, client_id=None, username=None, password=None, cert_pem=None)
            # Nothing given (or an access token without one): a generated access token.
            if (not any((token, client_id, username, password, cert))
                    or (ctype == "ACCESS_TOKEN" and not token)):
                creds["token"] = _random_alnum()
            elif ctype == "ACCESS_TOKEN":
                creds["token"] = token
            elif ctype == "MQTT_BASIC":
                creds.update(client_id=client_id or None, username=username or None,
                             password=password or None)
            else:
                creds["cert_pem"] = cert or None
            try:
                dev = self._register(name, **creds)
            except ValueError:
                return PROVISION_FAILURE
        dev.provisioned = True
        ctype, value = dev.credentials()
        return {"credentialsValue": value, "credentialsType": ctype, "status": "SUCCESS"}

    def _dev(self, name):
        try:
            return self._devices[name]
        except KeyError:
            raise KeyError("unknown device %r" % name) from None

    # ---- recording ----

    def _add_message(self, dev, topic, payload, qos, now, rejected):
        if dev is not None:
            dev.counts["messages"] += 1
            if rejected:
                dev.counts["rejected_msgs"] += 1
        if self._record:
            self._messages.append(Message(dev.name if dev else None, topic, payload, qos, now,
                                          rejected))
        if self._log:
            short = topic[len("v1/devices/me/"):] if topic.startswith("v1/devices/me/") else topic
            self._event(dev.name if dev else "(provision)", "%s  %s%s" % (
                short, payload[:200].decode("utf-8", "replace"),
                "  [rejected: session closed]" if rejected else ""))

    def _answer_client_rpc(self, sess, reply_topic, method, params):
        fn = self._client_rpc_fn
        answer = None
        if fn is not None:
            try:
                result = fn(sess.device.name, method, params)
                answer = None if result is None else java_json(result)
            except Exception:      # a broken test handler: show it, answer nothing
                traceback.print_exc()
        if answer is not None:
            sess.publish(reply_topic, answer)
        elif self.client_rpc_timeout_s is not None:
            sess.later(self.client_rpc_timeout_s,
                       lambda: sess.publish(reply_topic, '{"error":"timeout"}'))

    # ---- observation ----

    @property
    def devices(self):
        """{name: device} of every registered device (including provisioned ones)."""
        with self._cond:
            return dict(self._devices)

    @property
    def connacks(self):
        """Every CONNACK sent: list of (client_id, username, code)."""
        with self._cond:
            return list(self._connacks)

    @property
    def provisions(self):
        """Every provisioning request answered: list of (request dict, response dict)."""
        with self._cond:
            return list(self._provisions)

    def messages(self, device=None, topic=None):
        """Recorded PUBLISH packets (Message objects), optionally of one device and one
        topic (exact, or a prefix when it ends in "/")."""
        with self._cond:
            return [m for m in self._messages
                    if (device is None or m.device == device)
                    and (topic is None or m.topic == topic
                         or (topic.endswith("/") and m.topic.startswith(topic)))]

    def telemetry(self, device, since=0):
        """(ts, key, value) of every accepted telemetry value, in arrival order; ts is the
        device's timestamp, or the receive time (ms) for payloads without one."""
        with self._cond:
            return self._dev(device).telemetry[since:]

    def attributes(self, device):
        """The device's client-side attributes, merged."""
        with self._cond:
            return dict(self._dev(device).client)

    def shared(self, device):
        """The device's shared attributes as stored (including fw_*/sw_* of OTA)."""
        with self._cond:
            return dict(self._dev(device).shared)

    def connected(self, device):
        """True while the device has an open session (a sub-device: while it is connected in
        its gateway's session)."""
        with self._cond:
            dev = self._dev(device)
            if dev.parent is not None:
                return _Gateway.session_of(dev) is not None
            return dev.session is not None

    def connect_count(self, device):
        """Number of accepted CONNECTs of the device."""
        with self._cond:
            return self._dev(device).counts["connects"]

    def subscriptions(self, device):
        """{filter: granted QoS} of the device's current (or latest) session."""
        with self._cond:
            return dict(self._dev(device).subs)

    def claims(self, device):
        """Claiming requests: list of (secretKey, durationMs)."""
        with self._cond:
            return list(self._dev(device).claims)

    def ota_requests(self, device):
        """OTA chunk requests served: list of (kind, reqId, chunk index, chunk size)."""
        with self._cond:
            return list(self._dev(device).ota_requests)

    def downlinks(self, device, topic=None):
        """Messages sent to the device: list of (topic, payload bytes, qos); topic filters
        as in messages()."""
        with self._cond:
            return [d for d in self._dev(device).downlinks
                    if topic is None or d[0] == topic
                    or (topic.endswith("/") and d[0].startswith(topic))]

    def unacked(self, device):
        """Topics of QoS 1 downlinks in the current session that the device has not PUBACKed."""
        with self._cond:
            sess = self._dev(device).session
            return sorted(sess.inflight.values()) if sess else []

    def counts(self, device=None):
        """Counters of one device, or summed over all devices (see COUNTER_NAMES)."""
        with self._cond:
            if device is not None:
                return dict(self._dev(device).counts)
            total = dict.fromkeys(COUNTER_NAMES, 0)
            for dev in self._devices.values():
                for k, v in dev.counts.items():
                    total[k] += v
            return total

    def latency(self, clear=True):
        """(device ts, receive ms) of every telemetry entry that carried a ts since the
        last clear."""
        with self._cond:
            samples = list(self._latency)
            if clear:
                self._latency.clear()
            return samples

    def wait(self, predicate, timeout=10.0, what=None):
        """Wait until predicate() returns something true (evaluated under the lock, after
        every change) and return that value. A KeyError or IndexError from the predicate
        counts as "not yet" (a device that does not exist yet). TimeoutError names what
        (default: the predicate's source) and summarises the emulator's state."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                try:
                    value = predicate()
                except (KeyError, IndexError):
                    value = None
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out after %.1fs waiting for %s\n%s" % (
                        timeout, what or self._describe(predicate), self._summary()))
                # Also wake periodically: predicates may depend on time (RPC expiry).
                self._cond.wait(min(left, 0.05))

    def wait_messages(self, device, topic, count=1, timeout=10.0):
        """Wait until at least count messages of device on topic (as in messages()) were
        received; returns them all."""
        def enough():
            found = self.messages(device, topic)
            return found if len(found) >= count else None
        return self.wait(enough, timeout, "%d message(s) of %s on %s" % (count, device, topic))

    def wait_connected(self, device, timeout=10.0):
        """Wait until the device has an open session."""
        return self.wait(lambda: self.connected(device), timeout, "%s to connect" % device)

    @staticmethod
    def _describe(predicate):
        try:
            return inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            return repr(predicate)

    def _summary(self):
        lines = ["connected: %s" % sorted(d.name for d in self._devices.values() if d.session),
                 "last CONNACKs: %s" % self._connacks[-5:],
                 "%d message(s) recorded; last ones:" % len(self._messages)]
        lines += ["  %r" % m for m in self._messages[-5:]]
        return "\n".join(lines)

    # ---- server-side actions ----

    def set_shared(self, device, data):
        """Store shared attributes and push exactly this flat dict if the device is
        subscribed to attribute updates (§5). Floats are written as Java does (22.0)."""
        self._call(self._set_shared, device, dict(data))

    def _set_shared(self, device, data):
        dev = self._dev(device)
        dev.shared.update(data)
        if dev.parent is not None:
            return _Gateway.push_attributes(dev, data)
        sess = dev.session
        if sess is not None and sess.attr_push_topic:
            sess.publish(sess.attr_push_topic, java_json(data))

    def delete_shared(self, device, keys):
        """Delete shared attributes and push {"deleted": keys} to a subscribed device."""
        self._call(self._delete_shared, device, list(keys))

    def _delete_shared(self, device, keys):
        dev = self._dev(device)
        for k in keys:
            dev.shared.pop(k, None)
        if dev.parent is not None:
            return _Gateway.push_attributes(dev, {"deleted": keys})
        sess = dev.session
        if sess is not None and sess.attr_push_topic:
            sess.publish(sess.attr_push_topic, java_json({"deleted": keys}))

    def rpc(self, device, method, params=None, raw=None, expire_s=DEFAULT_RPC_EXPIRY_S):
        """Queue a server-side RPC (§6); returns its id (per device, from 0). It is sent now
        if the device is subscribed to RPC requests, and re-sent on every RPC
        (re)subscription until answered or expired (expire_s; None = never). raw: send
        these bytes as the body instead of {"method":…,"params":…} (malformed input)."""
        def op():
            dev = self._dev(device)
            rpc = _Rpc(dev.rpc_next, method, params, raw,
                       None if expire_s is None else time.monotonic() + expire_s)
            dev.rpc_next += 1
            dev.rpcs[rpc.id] = rpc
            if dev.parent is not None:
                _Gateway.queue_rpc(dev, rpc)
            elif dev.session is not None and dev.session.rpc_request_base is not None:
                dev.session.send_rpc(rpc)
            return rpc.id
        return self._call(op)

    def rpc_response(self, device, rid, timeout=10.0):
        """Wait for the device's answer to RPC rid and return it parsed (None for an empty
        body). TimeoutError if none came (or the RPC expired); ValueError if the body is not
        JSON (ThingsBoard's caller would get HTTP 406)."""
        def answered():
            return not self._dev(device).rpcs[rid].pending()
        self.wait(answered, timeout, "the answer to RPC %d of %s" % (rid, device))
        with self._cond:
            body = self._devices[device].rpcs[rid].response
        if body is None:
            raise TimeoutError("RPC %d of %s expired without an answer" % (rid, device))
        text = body.decode("utf-8", "replace")
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("RPC %d of %s: answer is not JSON: %r" % (rid, device, text)) from None

    def rpc_answers(self, device, rid):
        """Every answer the device published for RPC rid (repeats included), parsed."""
        with self._cond:
            parent = self._dev(device).parent
        if parent is not None:
            return _Gateway.rpc_answers(self.messages(parent.name, GW_RPC), device, rid)
        suffix = str(rid)
        return [m.json() for m in self.messages(device)
                if not m.rejected and any(m.topic == p + suffix for p in _RPC_RESPONSE_PREFIXES)]

    def push_raw(self, device, topic, payload):
        """Publish arbitrary bytes to the device's current session (malformed-input tests)."""
        def op():
            sess = self._dev(device).session
            if sess is not None:
                sess.publish(topic, payload)
        self._call(op)

    def on_client_rpc(self, fn):
        """Answer client-side RPCs (§7) with fn(device, method, params) -> JSON-able result,
        or None for no answer (ThingsBoard's default rule chain never answers; after
        client_rpc_timeout_s the device gets {"error":"timeout"}). fn runs on the emulator's
        thread and must not block."""
        with self._cond:
            self._client_rpc_fn = fn

    def set_rate_limits(self, messages=None, telemetry_messages=None, telemetry_datapoints=None,
                        max_inflight=None, report=True, tenant_messages=None,
                        tenant_telemetry_messages=None, tenant_telemetry_datapoints=None):
        """Tenant-profile transport rate limits (§2), "capacity:seconds,…" each, None for
        none: per device (messages, …) and for the whole tenant, shared by every device
        (tenant_…). Counted as ThingsBoard's transport counts them (see _consume): a refused
        publish closes the session (counted as rate_limited), a refused session open gets
        CONNACK 3, refused subscribes and RPC status updates change nothing. report: answer
        the built-in client RPC getSessionLimits (ThingsBoard 3.8+, answered by default,
        with no limits until this is called; the answer has the device limits only, as
        ThingsBoard's); False plays an older ThingsBoard, where it goes to the rule chain."""
        def op():
            self._limits = {"messages": messages, "telemetryMessages": telemetry_messages,
                            "telemetryDataPoints": telemetry_datapoints}
            self._tenant_limits = {"messages": tenant_messages,
                                   "telemetryMessages": tenant_telemetry_messages,
                                   "telemetryDataPoints": tenant_telemetry_datapoints}
            self._tenant_rate = None
            self._limits_inflight = max_inflight
            self._limits_report = report
            for dev in self._devices.values():
                dev.rate = None
        self._call(op)

    @staticmethod
    def _entity_ok(rate, points, now):
        """DefaultTransportRateLimitService.checkEntityRateLimit: with data points, one
        telemetry message and then (only if that passed) the points; else one message.
        What one bucket took stays taken when the next refuses."""
        if points > 0:
            return ((rate.get("telemetryMessages") is None
                     or rate["telemetryMessages"].take(1, now))
                    and (rate.get("telemetryDataPoints") is None
                         or rate["telemetryDataPoints"].take(points, now)))
        return rate.get("messages") is None or rate["messages"].take(1, now)

    def _consume(self, dev, points, now):
        """Count one message of dev (points data points; 0 = a regular message) as
        DefaultTransportRateLimitService.checkLimits does: the tenant's limits first (shared
        by every device), then the device's. None when admitted, else "tenant"/"device"."""
        if self._limits is not None:
            if self._tenant_rate is None:
                self._tenant_rate = {k: _RateLimit(v) for k, v in self._tenant_limits.items() if v}
            if not self._entity_ok(self._tenant_rate, points, now):
                dev.counts["rate_limited_tenant"] += 1
                return "tenant"
            if dev.rate is None:
                dev.rate = {k: _RateLimit(v) for k, v in self._limits.items() if v}
            if not self._entity_ok(dev.rate, points, now):
                return "device"
        if points > 0:
            dev.usage["telemetryMessages"] += 1
            dev.usage["telemetryDataPoints"] += points
        else:
            dev.usage["messages"] += 1
        return None

    def _consume_quietly(self, dev):
        """A regular message whose refusal has no consequence for the session (subscribes,
        RPC status updates, the session's close: their callbacks are null or EMPTY)."""
        if dev is not None:
            self._consume(dev, 0, _now_ms())

    def rate_usage(self, device):
        """What ThingsBoard's transport counted for device so far, by limit (RATE_KINDS),
        admitted messages only."""
        with self._cond:
            return dict(self._dev(device).usage)

    def key_types(self, device):
        """{key: type} ThingsBoard stored for the device's telemetry and client attribute
        keys (the latest value's type, as JsonConverter decides it)."""
        with self._cond:
            return dict(self._dev(device).key_types)

    def type_changes(self, device):
        """(key, old type, new type) each time a key's stored type changed."""
        with self._cond:
            return list(self._dev(device).type_changes)

    def session_limits(self):
        """The getSessionLimits answer, as ThingsBoard's transport builds it."""
        return {"maxPayloadSize": MAX_PAYLOAD,
                "maxInflightMessages": self._limits_inflight or 100,
                "rateLimits": dict(self._limits or {})}

    def set_ota(self, device, kind, title, version, data, algorithm="SHA256", checksum=None,
                tag=None):
        """Assign a firmware ("fw") or software ("sw") package (§10): the device is sent the
        deletion push ({"deleted":["fw_tag","fw_url"]}, or ["fw_url"] with a tag) and then
        the attribute push; the checksum is computed as ThingsBoard does unless given."""
        if kind not in OTA_KINDS:
            raise ValueError("kind must be 'fw' or 'sw'")
        if algorithm not in OTA_ALGORITHMS:
            raise ValueError("unknown checksum algorithm %r" % (algorithm,))
        data = bytes(data)
        if checksum is None:
            checksum = tb_checksum(algorithm, data)
        pkg = _OtaPackage(kind, title, version, tag, data, algorithm, checksum)
        p = kind + "_"
        attrs = {p + "title": title, p + "version": version}
        if tag is not None:
            attrs[p + "tag"] = tag
        attrs.update({p + "size": len(data), p + "checksum_algorithm": algorithm,
                      p + "checksum": checksum})
        deleted = [p + "url"] if tag is not None else [p + "tag", p + "url"]

        def op():
            self._dev(device).ota[kind] = pkg
            self._delete_shared(device, deleted)
            self._set_shared(device, attrs)
        self._call(op)

    def clear_ota(self, device, kind):
        """Unassign the package: one deletion push of every fw_*/sw_* key (§10)."""
        def op():
            self._dev(device).ota.pop(kind, None)
            self._delete_shared(device, [kind + "_" + k for k in OTA_ALL_KEYS])
        self._call(op)

    # ---- faults ----

    def drop(self, device):
        """Abort the device's connection (no DISCONNECT, no FIN handshake); returns whether
        it was connected."""
        def op():
            sess = self._dev(device).session
            if sess is not None:
                sess.close("dropped by test", abort=True)
            return sess is not None
        return self._call(op)

    def drop_all(self):
        """Abort every open connection (an outage of the server)."""
        def op():
            for sess in list(self._sessions):
                sess.close("dropped by test", abort=True)
        self._call(op)

    def refuse(self, code):
        """Answer every new CONNECT with CONNACK code (e.g. 3 = server unavailable) until
        refuse(None)."""
        if code is not None and not 1 <= code <= 255:
            raise ValueError("CONNACK code must be 1..255 or None")
        with self._cond:
            self._refuse_code = code

    def refuse_tcp(self, on=True):
        """While on, close every new TCP connection at once, before reading anything."""
        with self._cond:
            self._refuse_tcp = bool(on)

    def hold_puback(self, device, on=True):
        """Withhold PUBACKs for the device (queued); off releases them in order."""
        def op():
            dev = self._dev(device)
            dev.hold_puback = bool(on)
            if not on and dev.session is not None:
                dev.session.release_acks()
        self._call(op)

    def stall(self, device, on=True):
        """Half-open the device's current connection: stop reading and writing without
        closing it; off resumes (writes held meanwhile are sent). A new connection of the
        device is not stalled. Returns whether the device had a connection."""
        def op():
            sess = self._dev(device).session
            if sess is not None:
                sess.set_stalled(bool(on))
            return sess is not None
        return self._call(op)

    def close_on(self, device, fn):
        """Close the device's session without PUBACK whenever fn(topic, payload_bytes) is
        true for one of its PUBLISHes (a server-side validation failure); None removes it."""
        def op():
            self._dev(device).close_on = fn
        self._call(op)

    # ---- control port (command line) ----

    def start_control(self, port=0):
        """Listen for JSON-line commands on 127.0.0.1:port; returns the bound port."""
        async def listen():
            srv = await asyncio.start_server(self._control_client, "127.0.0.1", port)
            self._servers.append(srv)
            return srv.sockets[0].getsockname()[1]
        self.control_port = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        return self.control_port

    async def _control_client(self, reader, writer):
        loop = asyncio.get_running_loop()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                # Commands may block (rpc_response), so they run off the loop thread.
                reply = await loop.run_in_executor(None, self.control_command, line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def control_command(self, line):
        """Execute one control-port command, a JSON object {"cmd": …, …}. The reply is
        {"ok": true} plus the result under a name ("id", "response", "counts", "telemetry",
        "attributes", "connected", "latency", …), or {"ok": false, "error": "…"}."""
        try:
            req = json.loads(line)
            result = _CONTROL_COMMANDS[req["cmd"]](self, req)
        except Exception as e:     # reported to the client, the emulator keeps running
            return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        return dict({"ok": True}, **(result or {}))

    def load_devices(self, path):
        """Register devices and provisioning profiles from a devices.json file:
        {"devices": [{"name", "token" | "client_id"/"username"/"password" | "cert_file",
                      "gateway"?}],
         "provision": [{"key", "secret", "allow_create"?}]}."""
        with open(path) as f:
            conf = json.load(f)
        for d in conf.get("devices", []):
            cert = None
            if d.get("cert_file"):
                with open(d["cert_file"]) as cf:
                    cert = cf.read()
            self.add_device(d["name"], token=d.get("token"), client_id=d.get("client_id"),
                            username=d.get("username"), password=d.get("password"),
                            cert_pem=cert)
            if d.get("gateway"):
                self.set_gateway(d["name"])
        for p in conf.get("provision", []):
            self.add_provision_profile(p["key"], p["secret"], p.get("allow_create", True))


def _per_device(emu, req, fn):
    """fn(name) for the named device, or {name: fn(name)} for every device."""
    if req.get("device") is not None:
        return fn(req["device"])
    return {name: fn(name) for name in emu.devices}


def _telemetry_since(emu, req):
    since = req.get("since", 0)
    values = emu.telemetry(req["device"], since)
    return {"telemetry": values, "next": since + len(values)}


_CONTROL_COMMANDS = {
    "add_device": lambda e, r: e.add_device(
        r["name"], token=r.get("token"), client_id=r.get("client_id"),
        username=r.get("username"), password=r.get("password"),
        cert_pem=r.get("cert_pem"), protobuf=r.get("protobuf", False)) and None,
    "add_provision_profile": lambda e, r: e.add_provision_profile(
        r["key"], r["secret"], r.get("allow_create", True)),
    "set_shared": lambda e, r: e.set_shared(r["device"], r["data"]),
    "delete_shared": lambda e, r: e.delete_shared(r["device"], r["keys"]),
    "rpc": lambda e, r: {"id": e.rpc(r["device"], r["method"], r.get("params"),
                                     expire_s=r.get("expire_s", DEFAULT_RPC_EXPIRY_S))},
    "rpc_response": lambda e, r: {"response": e.rpc_response(r["device"], r["id"],
                                                             r.get("timeout", 10.0))},
    "drop": lambda e, r: {"dropped": e.drop(r["device"])},
    "drop_all": lambda e, r: e.drop_all(),
    "refuse": lambda e, r: e.refuse(r.get("code")),
    "refuse_tcp": lambda e, r: e.refuse_tcp(r.get("on", True)),
    "hold_puback": lambda e, r: e.hold_puback(r["device"], r.get("on", True)),
    "stall": lambda e, r: {"stalled": e.stall(r["device"], r.get("on", True))},
    "counts": lambda e, r: {"counts": _per_device(e, r, e.counts)},
    "key_types": lambda e, r: {"key_types": e.key_types(r["device"])},
    "rate_usage": lambda e, r: {"rate_usage": e.rate_usage(r["device"])},
    "connected": lambda e, r: {"connected": _per_device(e, r, e.connected)},
    "connect_count": lambda e, r: {"connect_count": _per_device(e, r, e.connect_count)},
    "telemetry": _telemetry_since,
    "attributes": lambda e, r: {"attributes": e.attributes(r["device"])},
    "latency": lambda e, r: {"latency": e.latency(clear=True)},
    "set_ota": lambda e, r: e.set_ota(
        r["device"], r["kind"], r["title"], r["version"], base64.b64decode(r["data"]),
        r.get("algorithm", "SHA256"), r.get("checksum"), r.get("tag")),
    "clear_ota": lambda e, r: e.clear_ota(r["device"], r["kind"]),
    "set_gateway": lambda e, r: e.set_gateway(r["device"], r.get("on", True)),
    "subdevices": lambda e, r: {"subdevices": e.subdevices(r["device"])},
    "gateway_connected": lambda e, r: {"gateway_connected": e.gateway_connected(r["device"])},
    "set_gateway_rate_limits": lambda e, r: e.set_gateway_rate_limits(
        r.get("messages"), r.get("telemetry_messages"), r.get("telemetry_datapoints"),
        r.get("device_messages"), r.get("device_telemetry_messages"),
        r.get("device_telemetry_datapoints")),
}


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="ThingsBoard device-API emulator (MQTT 3.1.1 on 127.0.0.1).")
    ap.add_argument("--port", type=int, default=1883, help="MQTT port (0 = pick one)")
    ap.add_argument("--devices", help="devices.json: devices and provisioning profiles")
    ap.add_argument("--tls-port", type=int, help="also listen for MQTTS (0 = pick one)")
    ap.add_argument("--certfile", help="server certificate (PEM) for --tls-port")
    ap.add_argument("--keyfile", help="server key (PEM) for --tls-port")
    ap.add_argument("--cafile", help="CA that signs client certificates (X.509 devices)")
    ap.add_argument("--control", type=int, help="JSON-line control port (0 = pick one)")
    ap.add_argument("--log", action="store_true",
                    help="one line per message, connect and disconnect on stderr")
    ap.add_argument("--no-record", action="store_true",
                    help="keep counters only, not every payload (long benchmarks)")
    args = ap.parse_args(argv)

    tls = None
    if args.tls_port is not None:
        if not (args.certfile and args.keyfile):
            ap.error("--tls-port needs --certfile and --keyfile")
        tls = dict(certfile=args.certfile, keyfile=args.keyfile, cafile=args.cafile,
                   port=args.tls_port)
    # Without recording, a long benchmark keeps at most this many latency samples between
    # two "latency" commands.
    emu = Emulator(port=args.port, tls=tls, record=not args.no_record,
                   latency_samples=None if not args.no_record else 1_000_000, log=args.log)
    if args.devices:
        emu.load_devices(args.devices)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    emu.start()
    control = emu.start_control(args.control) if args.control is not None else None
    print("READY port=%d tls_port=%s control=%s" % (
        emu.port, emu.tls_port if emu.tls_port is not None else "-",
        control if control is not None else "-"), flush=True)
    while not stopping.wait(0.5):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
