"""Loader throughput: decoded frames per second through a ``DataLoader`` (decode, checks, edge label,
transforms and collation), the data side of a training or evaluation step."""
from __future__ import annotations

import itertools
import time

from torch.utils.data import DataLoader, Dataset

__all__ = ["loader_throughput"]


def loader_throughput(dataset: Dataset, num_workers: int, batch_size: int = 1,
                      max_samples: int | None = None) -> dict[str, float]:
    """Iterate a DataLoader over ``dataset`` once (after one warm-up batch: worker start-up and the first
    decode are not counted), at most ``max_samples`` samples, and time it.

    Returns ``frames_per_s`` (decoded frames / s), ``samples_per_s``, ``seconds`` and ``samples``.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    num_batches = None if max_samples is None else -(-max_samples // batch_size)
    batches = iter(loader)
    next(batches)
    samples = frames = 0
    start = time.perf_counter()
    for batch in itertools.islice(batches, num_batches):
        samples += batch["frames"].shape[0]
        frames += batch["frames"].shape[0] * batch["frames"].shape[1]
    seconds = time.perf_counter() - start
    return {"frames_per_s": frames / seconds, "samples_per_s": samples / seconds,
            "seconds": seconds, "samples": samples}
