"""Seeds derived from identities, not positions (docs/design.md, invariant 7).

A slice keeps its seed when a deletion removes the slices before it, so the rest
of the component retrains exactly as a fit without that data would.
"""

import hashlib


def seed_for(*identity) -> int:
    """A 31-bit seed from a tuple of names and numbers, stable across processes."""
    text = "/".join(str(part) for part in identity)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
