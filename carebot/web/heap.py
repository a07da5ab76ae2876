"""The garbage collector of a serving process, tuned so its pauses stay short.

By the time the service listens it holds hundreds of thousands of long-lived objects (the
sentence encoder, the FAQ index and matcher, SQLAlchemy's mappings, the routes). CPython's
full (generation 2) collections walk all of them: with 2,000 web chat visitors connected
each one took 300-650 ms, during which no request, socket or writer thread ran
(benchmarks/web_chat.py), and that was the p99. `gc.freeze()` moves what exists at startup
into a permanent generation no collection visits; what requests allocate is still
collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect once, then exempt everything alive now from later collections."""
    gc.collect()
    gc.freeze()
