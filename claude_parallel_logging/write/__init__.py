"""The writer thread: queued operations compiled to SQL batches (``batch``, ``values``) and
written through a store, with retries, flush barriers and pushes (``writer``)."""

from .writer import Writer, WriterStats

__all__ = ["Writer", "WriterStats"]
