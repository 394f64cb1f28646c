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

BUDGET = 64 << 20
_STATE: dict = {}


class MemoryBytes:
    """A ByteSource over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self.name, self.size, self._data = "fuzz.tif", len(data), data

    def pread(self, count: int, offset: int) -> bytes:
        return self._data[offset : offset + count]

    def close(self) -> None:
        pass


def setup(instrument: bool = False) -> None:
    import numpy  # noqa: F401 - imported (uninstrumented) before pyiip
    import tifffile

    tifffile.tifffile.logger().disabled = True  # mutated files make tifffile warn a lot
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["pyiip"]):
            from pyiip import errors
            from pyiip.read.tiff import TiffSource
    else:
        from pyiip import errors
        from pyiip.read.tiff import TiffSource
    _STATE.update(TiffSource=TiffSource, SourceError=errors.SourceError)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    source_error = _STATE["SourceError"]
    try:
        source = _STATE["TiffSource"](MemoryBytes(data))
    except source_error:
        return
    try:
        info = source.info
        if not info.levels or info.channels < 1:
            raise AssertionError("opened without levels or channels")
        for level, lv in enumerate(info.levels):
            w, h = min(lv.width, 64), min(lv.height, 64)
            if w * h * info.channels * info.dtype.itemsize + source.read_overhead(level, w, h) > BUDGET:
                continue  # the server would answer 413
            try:
                pixels = source.read(level, 0, 0, w, h)
                if pixels.shape != (h, w, info.channels):
                    raise AssertionError(f"read {pixels.shape}, wanted {(h, w, info.channels)}")
                source.stored_jpeg(level, 0, 0)
            except source_error:
                pass
    finally:
        source.close()


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.seed_tiffs().items():
        (directory / f"seed-{name}.tif").write_bytes(data)


if __name__ == "__main__":
    seeds.fuzz(setup, write_seeds, TestOneInput)
