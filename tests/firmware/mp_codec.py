# ruff: noqa: UP031 - MicroPython script, firmware style
# mypy: ignore-errors
# MicroPython side of the codec tests: reads one command per line on stdin,
# runs the firmware's own codec and prints one result line per command.
#   R seq boot t_ms name=f:<double hex>|i:<int> ...  -> report bytes (hex)
#   D <hex>                                        -> OK <canonical re-encoding> | ERR
#   P <hex>                                        -> OK type code mid token payload | ERR
#   B mid token_hex payload_hex                    -> request bytes (hex)
#   E type mid                                     -> empty message (hex)
# Floats travel as IEEE double hex: MicroPython's decimal parsing is not
# always correctly rounded, and these tests compare bytes exactly.
import struct
import sys
from binascii import hexlify, unhexlify

import cbor
import coap
from cbor_decode import loads
from report import ReportEncoder


def hx(b):
    return hexlify(b).decode()


def dumps(obj, out):
    tmp = bytearray(9)
    if obj is None or obj is True or obj is False:
        out.append(0xF6 if obj is None else (0xF5 if obj else 0xF4))
    elif isinstance(obj, (int, float)):
        out.extend(tmp[:cbor.put_number(tmp, 0, obj)])
    elif isinstance(obj, str):
        out.extend(cbor.text_key(obj))
    elif isinstance(obj, bytes):
        out.extend(tmp[:cbor.head(tmp, 0, 2, len(obj))])
        out.extend(obj)
    elif isinstance(obj, list):
        out.extend(tmp[:cbor.head(tmp, 0, 4, len(obj))])
        for item in obj:
            dumps(item, out)
    else:
        out.extend(tmp[:cbor.head(tmp, 0, 5, len(obj))])
        keys = []
        for k in obj:
            kb = bytearray()
            dumps(k, kb)
            keys.append((len(kb), bytes(kb), k))
        keys.sort()
        for _, kb, k in keys:
            out.extend(kb)
            dumps(obj[k], out)


def value(token):
    kind, raw = token.split(":", 1)
    if kind == "f":
        return struct.unpack(">d", unhexlify(raw))[0]
    return int(raw)


def report(args):
    names = []
    values = []
    for item in args[3:]:
        name, v = item.split("=", 1)
        names.append(name)
        values.append(value(v))
    enc = ReportEncoder(names)
    buf = bytearray(enc.max_size)
    n = enc.encode(buf, 0, int(args[0]), int(args[1]), int(args[2]), values)
    return hx(buf[:n])


def decode(args):
    out = bytearray()
    dumps(loads(unhexlify(args[0] if args else "")), out)
    return "OK " + hx(out)


def parse(args):
    data = unhexlify(args[0] if args else "")
    mtype, code, mid, token, body = coap.parse(data)
    return "OK %d %d %d %s %s" % (mtype, code, mid, hx(token) or "-", hx(data[body:]) or "-")


def build(args):
    payload = unhexlify(args[2])
    buf = bytearray(coap.REQUEST_OVERHEAD + len(payload))
    n = coap.build_post_r(buf, int(args[0]), unhexlify(args[1]), payload, 0, len(payload))
    return hx(buf[:n])


def empty(args):
    buf = bytearray(4)
    return hx(buf[:coap.build_empty(buf, int(args[0]), int(args[1]))])


COMMANDS = {"R": report, "D": decode, "P": parse, "B": build, "E": empty}

for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    try:
        print(COMMANDS[parts[0]](parts[1:]))
    except (ValueError, IndexError, KeyError, TypeError, RuntimeError) as e:
        print("ERR %s %s" % (type(e).__name__, e))
