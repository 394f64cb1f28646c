"""The fuzz targets stay runnable: their seeds and random mutations pass (tests/system runs atheris on each).

`make fuzz` runs them for FUZZ_SECONDS each; this only checks they work.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


def load(name: str):
    sys.path.insert(0, str(FUZZ))
    try:
        spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(FUZZ))
    module.setup(instrument=False)
    return module


def mutations(seed: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Byte flips, insertions, deletions and splices, as a fuzzer would start with."""
    found = []
    for _ in range(count):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data) + 1)
            choice = rng.random()
            if choice < 0.4 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif choice < 0.6:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            elif choice < 0.8:
                del data[at : at + rng.randint(1, 16)]
            else:
                data[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x01\0\0\0", b"%00", b"../"])
        found.append(bytes(data))
    return found


def test_parser_target_on_seeds_and_mutations():
    target = load("fuzz_parsers")
    import seeds

    rng = random.Random(1)
    for request in seeds.SEED_REQUESTS:
        data = request.encode("latin-1")
        for case in [data, *mutations(data, rng, 15)]:
            target.TestOneInput(case)


def test_tiff_target_on_seeds_and_mutations():
    target = load("fuzz_tiff")
    import seeds

    rng = random.Random(2)
    for data in seeds.seed_tiffs().values():
        for case in [data, *mutations(data, rng, 40)]:
            target.TestOneInput(case)


def test_jp2_target_on_seeds_and_mutations():
    target = load("fuzz_jp2")
    import seeds

    rng = random.Random(3)
    for data in seeds.seed_jpeg2000().values():
        for case in [data, *mutations(data, rng, 60)]:
            target.TestOneInput(case)
