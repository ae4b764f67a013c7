"""pgsift's CLI with tracemalloc on, for `memory.py`: SIGUSR1 writes a snapshot.

    <checkout>/.venv/bin/python bench/e2e/traced_serve.py serve ...

`PGSIFT_BENCH_SNAPSHOT` names the file each SIGUSR1 writes (atomically: a `.part`
file renamed), `PGSIFT_BENCH_TRACE_FRAMES` how many frames each allocation keeps.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def main() -> int:
    tracemalloc.start(int(os.environ.get("PGSIFT_BENCH_TRACE_FRAMES", "1")))
    target = Path(os.environ["PGSIFT_BENCH_SNAPSHOT"])

    def dump(signum: int, frame: FrameType | None) -> None:
        gc.collect()  # what is only garbage is not a subscription's
        part = target.with_suffix(".part")
        tracemalloc.take_snapshot().dump(str(part))
        part.rename(target)

    signal.signal(signal.SIGUSR1, dump)
    from pgsift.middleware.cli import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
