"""Pure converters between Modbus registers and engineering values (no I/O).

Registers travel big-endian on the wire; a point's `byte_order` says whether
the bytes inside each register are swapped, `word_order` whether a 32-bit
value's low word comes first ("little": CDAB). `plan_reads` groups the points
due for a poll into as few requests as the protocol allows.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tandem.gateway.modbus.registers import DataType, Point, Table

MAX_READ_REGISTERS = 125  # FC03/FC04
MAX_READ_BITS = 2000  # FC01/FC02


class DecodeError(ValueError):
    """A response that does not fit the point (too few registers)."""


def decode(point: Point, words: Sequence[int]) -> float:
    """Engineering value of a register point from its registers (as read, wire order)."""
    if point.type is DataType.BOOL:
        raise DecodeError(f"{point.name}: a bit, not registers")
    if len(words) < point.words:
        raise DecodeError(f"{point.name}: needs {point.words} registers, got {len(words)}")
    raw = struct.unpack(">" + point.type.fmt, _to_bytes(point, words[:point.words]))[0]
    return float(raw) * point.scale


def encode(point: Point, value: float) -> list[int]:
    """Registers to write for an engineering value; ValueError when it does not fit."""
    if point.type is DataType.BOOL:
        raise ValueError(f"{point.name}: a bit, not registers")
    if not math.isfinite(value):
        raise ValueError(f"{point.name}: {value!r} is not a finite number")
    raw = value / point.scale
    low, high = point.type.raw_range
    if not low <= raw <= high:
        raise ValueError(f"{point.name}: {value:g} does not fit {point.type} "
                         f"at scale {point.scale:g}")
    packed = struct.pack(">" + point.type.fmt,
                         raw if point.type is DataType.FLOAT32 else round(raw))
    return _to_words(point, packed)


def _to_bytes(point: Point, words: Sequence[int]) -> bytes:
    ordered = list(reversed(words)) if point.word_order == "little" else list(words)
    data = b"".join((w & 0xFFFF).to_bytes(2, "big") for w in ordered)
    if point.byte_order == "little":
        data = bytes(b for i in range(0, len(data), 2) for b in (data[i + 1], data[i]))
    return data


def _to_words(point: Point, data: bytes) -> list[int]:
    if point.byte_order == "little":
        data = bytes(b for i in range(0, len(data), 2) for b in (data[i + 1], data[i]))
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return list(reversed(words)) if point.word_order == "little" else words


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: a contiguous address range of one table and the points inside it."""

    table: Table
    start: int
    count: int
    points: tuple[Point, ...]

    def values(self, data: Sequence[int] | Sequence[bool]) -> dict[str, float]:
        """Engineering values of the block's points from the registers (bits) read."""
        if len(data) < self.count:
            raise DecodeError(f"{self.table} {self.start}+{self.count}: got {len(data)} values")
        out: dict[str, float] = {}
        for p in self.points:
            offset = p.address - self.start
            if self.table.is_bits:
                out[p.name] = 1.0 if data[offset] else 0.0
            else:
                out[p.name] = decode(p, [int(w) for w in data[offset:offset + p.words]])
        return out


def plan_reads(points: Iterable[Point], max_gap: int = 8) -> list[Block]:
    """Merge points into blocks per table: gaps of up to max_gap unused addresses are read."""
    blocks: list[Block] = []
    for table in Table:
        mine = sorted((p for p in points if p.table is table), key=lambda p: p.address)
        limit = MAX_READ_BITS if table.is_bits else MAX_READ_REGISTERS
        group: list[Point] = []
        for p in mine:
            if group and (p.address - _end(group) > max_gap or p.end - group[0].address > limit):
                blocks.append(_block(table, group))
                group = []
            group.append(p)
        if group:
            blocks.append(_block(table, group))
    return blocks


def _end(group: list[Point]) -> int:
    return max(p.end for p in group)


def _block(table: Table, group: list[Point]) -> Block:
    start = group[0].address
    return Block(table, start, _end(group) - start, tuple(group))
