"""Coverage-guided fuzzing of the pyramidal TIFF reader with mutated files.

Seeds are valid pyramids of each layout (JPEG, deflate, LZW, float cubes,
SubIFDs, separate planes); atheris mutates their bytes. Opening a mutation
must either work or raise SourceError, and so must reading a corner of every
level and asking for a stored JPEG tile: any other exception is a bug. Reads
go through the same memory check the server applies (64 MB here), so a
mutated size cannot make the fuzzer itself run out of memory.

    .venv/bin/python fuzz/fuzz_tiff.py -max_total_time=60 fuzz/corpus/tiff
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seeds

_STATE: dict = {}


def setup(instrument: bool = False) -> None:
    import numpy  # noqa: F401 - imported (uninstrumented) before pyiip
    import tifffile

    tifffile.tifffile.logger().disabled = True  # mutated files make tifffile warn a lot
    errors, tiff = seeds.import_pyiip(instrument, "pyiip.errors", "pyiip.read.tiff")
    _STATE.update(TiffSource=tiff.TiffSource, SourceError=errors.SourceError)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    source_error = _STATE["SourceError"]
    try:
        source = _STATE["TiffSource"](seeds.MemoryBytes(data))
    except source_error:
        return
    seeds.check_source(source, source_error)


def write_seeds(directory: Path) -> None:
    seeds.write_corpus(directory, seeds.seed_tiffs(), ".tif")


if __name__ == "__main__":
    seeds.fuzz(setup, write_seeds, TestOneInput)
