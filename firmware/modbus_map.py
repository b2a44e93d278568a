# The node's Modbus tables, laid out by firmware/registers.json (generated
# from hw/registers/sensor-node.toml: never edit the JSON by hand). Points are
# addressed by their source name: set() encodes an engineering value into its
# registers (with the point's scale, word and byte order), value() decodes it.
# commit() checks a master's write (read-only point: exception 02, outside
# min..max: 03, the output failed: 04) and hands each new value to on_write.
# Points are kept as columns (arrays, one flags byte each), not objects: a
# 22-point map costs ~1.5 KB instead of ~7 KB.
import json
import struct
from array import array

from micropython import const

# flags byte: table (bits 0-1), format index (2-4), swap words, swap bytes, writable
_SWAP_WORDS = const(0x20)
_SWAP_BYTES = const(0x40)
_WRITABLE = const(0x80)
_NONE = const(255)  # end of a source's chain of points
_FMTS = ("?", ">h", ">H", ">i", ">I", ">f")  # index 0 (bool): tables 0 and 1
_LIMITS = (None, (-0x8000, 0x7FFF), (0, 0xFFFF), (-0x80000000, 0x7FFFFFFF), (0, 0xFFFFFFFF),
           None)


class MapError(Exception):
    pass


class Regs:
    def __init__(self, path):
        try:
            with open(path) as f:
                doc = json.load(f)
            sizes = doc["sizes"]
            rows = doc["points"]
            n = len(rows)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MapError("%s: unusable register map (%r)" % (path, e))
        self.name = doc.get("name", "?")
        self.tables = [bytearray(sizes[0]), bytearray(sizes[1]),
                       array("H", bytes(2 * sizes[2])), array("H", bytes(2 * sizes[3]))]
        self.addr = array("H", bytes(2 * n))
        self.flags = bytearray(n)
        self.scale = array("d", bytes(8 * n))
        self.lo = [None] * n
        self.hi = [None] * n
        self.first = {}  # source -> its first point; .chain links the others
        self.chain = bytearray(n)
        self._scratch = bytearray(4)
        for i in range(n - 1, -1, -1):
            self._row(i, rows[i])
        self.on_prepare = None  # fn(table) before a master reads it
        self.on_write = None  # fn(source, value) after a master changed it

    def _row(self, i, r):
        # columns: source table address fmt scale swap_words swap_bytes lo hi default writable
        self.addr[i] = r[2]
        self.flags[i] = r[1] | "?hHiIf".index(r[3]) << 2 \
            | (_SWAP_WORDS if r[5] else 0) | (_SWAP_BYTES if r[6] else 0) \
            | (_WRITABLE if r[10] else 0)
        self.scale[i] = r[4]
        self.lo[i] = r[7]
        self.hi[i] = r[8]
        self.chain[i] = self.first.get(r[0], _NONE)
        self.first[r[0]] = i
        self._store(i, r[9])

    def size(self, table):
        return len(self.tables[table])

    def has(self, source):
        return source in self.first

    def set(self, source, value):
        # Every point fed by `source` (e.g. temp as float32 and as int16).
        i = self.first.get(source, _NONE)
        while i != _NONE:
            self._store(i, self._raw(i, value))
            i = self.chain[i]

    def value(self, source):
        return self._value(self.first[source])

    def _value(self, i):
        raw = self._load(i)
        scale = self.scale[i]
        return raw if scale == 1 else raw * scale

    def prepare(self, table):
        if self.on_prepare is not None:
            self.on_prepare(table)

    def commit(self, table, start, count):
        # 0 or a Modbus exception code; the slave rolls the write back on non-zero.
        for i in range(len(self.flags)):
            if self._hit(i, table, start, count):
                if not self.flags[i] & _WRITABLE:
                    return 2
                raw = self._load(i)
                lo = self.lo[i]
                hi = self.hi[i]
                if (lo is not None and raw < lo) or (hi is not None and raw > hi):
                    return 3
        for i in range(len(self.flags)):
            if self.on_write is not None and self._hit(i, table, start, count):
                try:
                    self.on_write(self._source(i), self._value(i))
                except (OSError, ValueError):  # the output (a pin, a setting) failed
                    return 4
        return 0

    def _hit(self, i, table, start, count):
        f = self.flags[i]
        a = self.addr[i]
        return f & 3 == table and a < start + count and a + (2 if f >> 2 & 7 >= 3 else 1) > start

    def _source(self, i):
        for name, j in self.first.items():
            while j != _NONE:
                if j == i:
                    return name
                j = self.chain[j]
        return None

    def _raw(self, i, value):
        f = self.flags[i]
        if f & 3 <= 1:
            return 1 if value else 0
        scale = self.scale[i]
        raw = value / scale if scale != 1 else value
        lim = _LIMITS[f >> 2 & 7]
        if lim is None:  # float32
            return raw
        raw = int(round(raw))
        return lim[0] if raw < lim[0] else lim[1] if raw > lim[1] else raw

    def _store(self, i, raw):
        f = self.flags[i]
        t = self.tables[f & 3]
        a = self.addr[i]
        if f & 3 <= 1:
            t[a] = raw
            return
        b = self._scratch
        k = f >> 2 & 7
        struct.pack_into(_FMTS[k], b, 0, raw)
        hi, lo = (1, 0) if f & _SWAP_BYTES else (0, 1)
        w0 = b[hi] << 8 | b[lo]
        if k < 3:
            t[a] = w0
            return
        w1 = b[2 + hi] << 8 | b[2 + lo]
        if f & _SWAP_WORDS:
            w0, w1 = w1, w0
        t[a] = w0
        t[a + 1] = w1

    def _load(self, i):
        f = self.flags[i]
        t = self.tables[f & 3]
        a = self.addr[i]
        if f & 3 <= 1:
            return t[a]
        b = self._scratch
        k = f >> 2 & 7
        hi, lo = (1, 0) if f & _SWAP_BYTES else (0, 1)
        w0 = t[a]
        if k >= 3:
            w1 = t[a + 1]
            if f & _SWAP_WORDS:
                w0, w1 = w1, w0
            b[2 + hi] = w1 >> 8
            b[2 + lo] = w1 & 0xFF
        b[hi] = w0 >> 8
        b[lo] = w0 & 0xFF
        return struct.unpack_from(_FMTS[k], b, 0)[0]
