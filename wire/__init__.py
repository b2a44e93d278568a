"""Tandem's wire format, shared by gateway and cloud (the firmware has its own codec).

One definition of every message that crosses a process boundary:
node -> gateway reading reports (`report`), gateway -> cloud uplink batches
(`batch`) and their COSE_Sign1 envelope (`cose`). docs/protocol.md documents
the bytes.
"""

from tandem.wire.errors import WireError

__all__ = ["WireError"]
