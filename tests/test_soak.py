"""The soak's slope check: flat-with-noise passes, a planted leak fails; and a short real soak per queue.

The real soak (`diplom soak` in small): a stack per queue, half its measured
max rate for 60 s (two minutes of soak over both queues, issue 20's CI soak),
RSS and open fds of every process sampled every 2 s, the first 8 s not fitted.
Cost: ~70 s per queue. The 10-minute run is by hand: `diplom soak --minutes 10`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from experiments.bench.soak import FD_FLOOR, Series, report, rss_floor, slope, soak_queue


def _series(values: list[float], every_s: float = 2.0) -> Series:
    s = Series("p rss", "MiB")
    s.t = [i * every_s for i in range(len(values))]
    s.v = values
    return s


def test_a_flat_noisy_series_does_not_grow() -> None:
    rng = random.Random(7)
    values = [120 + rng.gauss(0, 1.5) for _ in range(20)]
    assert not slope(_series(values), warmup_s=4, floor=rss_floor(120)).grows


def test_a_planted_leak_grows_beyond_noise_and_floor() -> None:
    rng = random.Random(7)
    values = [120 + 0.5 * i + rng.gauss(0, 1.5) for i in range(20)]  # 0.25 MiB/s: 15 MiB a minute
    fitted = slope(_series(values), warmup_s=4, floor=rss_floor(120))
    assert fitted.grows, fitted.line()
    assert 12 < fitted.per_min < 18


def test_descriptors_leaking_one_per_sample_are_caught() -> None:
    assert slope(_series([40.0 + i for i in range(15)]), warmup_s=0, floor=FD_FLOOR).grows
    assert not slope(_series([40.0, 41.0, 40.0, 41.0] * 4), warmup_s=0, floor=FD_FLOOR).grows


def test_too_few_samples_after_the_warmup_is_an_error() -> None:
    with pytest.raises(ValueError, match="need 3"):
        slope(_series([1.0, 2.0, 3.0]), warmup_s=100, floor=1)


@pytest.mark.spawns
@pytest.mark.timeout(180)
@pytest.mark.parametrize("queue", ["memory", "nats"])
async def test_a_short_soak_shows_no_growth_in_any_process(queue: str, tmp_path: Path) -> None:
    seconds = 60.0
    result = await soak_queue(queue, seconds, sample_s=2.0, warmup_s=8.0, workdir=tmp_path)
    print(report(result, seconds))
    assert result.ok > 0.9 * result.sent, report(result, seconds)
    names = {s.name.split()[0] for s in result.slopes}
    assert {"gateway", "ingest", "processor-0"} <= names
    assert ("nats-server" in names) == (queue == "nats")
    assert result.growing == [], report(result, seconds)
