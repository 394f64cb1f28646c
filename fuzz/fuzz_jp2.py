"""Coverage-guided fuzzing of the JPEG 2000 / HTJ2K reader with mutated files.

Seeds are valid JP2, J2K and HTJ2K files, untiled and tiled (seeds.seed_jpeg2000);
atheris mutates their bytes. Opening a mutation must work or raise SourceError
(or TooLarge: a header declaring too much is a 413), and so must reading a corner
of every level within the memory check. OpenJPEG itself runs under the fuzzer:
an abort or a crash in it is a finding too (Debian's 2.5.0 asserts on corrupt
HTJ2K code-blocks, which is why read/openjpeg.py prefers imagecodecs' build).

    .venv/bin/python fuzz/fuzz_jp2.py -max_total_time=60 fuzz/corpus/jp2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seeds

_STATE: dict = {}


def setup(instrument: bool = False) -> None:
    import numpy  # noqa: F401 - imported (uninstrumented) before pyiip

    errors, jp2 = seeds.import_pyiip(instrument, "pyiip.errors", "pyiip.read.jp2")
    refused = (errors.SourceError, errors.TooLarge)
    _STATE.update(Jp2Source=jp2.Jp2Source, refused=refused, SourceError=errors.SourceError)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    try:
        source = _STATE["Jp2Source"](seeds.MemoryBytes(data))
    except _STATE["refused"]:
        return
    seeds.check_source(source, _STATE["SourceError"])


def write_seeds(directory: Path) -> None:
    seeds.write_corpus(directory, seeds.seed_jpeg2000())


if __name__ == "__main__":
    seeds.fuzz(setup, write_seeds, TestOneInput)
