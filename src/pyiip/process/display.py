"""The per-channel display pipeline of iipsrv-astro: raw TIFF samples to 8-bit pixels.

Order (iip-protocol-and-astro.md §4.2): normalise each channel by min/max, SHD,
CTW (astro semantics), flatten to 1 or 3 channels, GAM, INV, CMP on channel 0,
then contrast and truncation to uint8.

Everything up to the flatten is linear in the normalised values (SHD apart), and
everything after it is one scalar function applied to each output channel: the
*transfer* (gamma, invert, colour map, contrast; process/transfer.py). So the work
splits in two:

* the linear part runs as a few float32 passes over whole planes;
* the transfer runs on those planes as a few more float32 passes written straight
  into the uint8 output (``Transfer.grey``, ``Transfer.colour``), within 1 grey
  level of the float64 formulas, whatever the setting and whether or not the
  previous tile had the same: no per-setting table to build. 8/16-bit integer data whose channels are not mixed
  instead looks up an exact table indexed by the raw sample (one per setting and
  range, cached). ``exact=True``, and settings outside ``Transfer.fast``, run the
  float64 formulas.

Identical grey planes (mono mode) are packed as RGBX uint32 and unpacked to a
C-contiguous (h, w, 3) array in one copy (process/rgbx.py).

Where this differs from iipsrv-astro, on purpose:

* red/green/blue colour maps work (upstream formulas); astro leaves the buffer
  uninitialised.
* NaN produced inside the pipeline (inf * 0) gives 0, not an undefined cast.
* min/max are not rounded to float32 before use (float64, or a float32 pair), so
  tight ranges far from 0 stay accurate; 32-bit integers are normalised in float64.
* SHD on fewer than 3 channels is ignored (iipsrv reads past the buffer);
  non-finite MINMAX values and CTW coefficients are ignored / taken as 0.
* Float images without min/max tags get NaN from default_minmax so the caller
  computes a range, where astro would divide by zero and saturate.
* CTW rows are computed from the untouched input channels (a copy, not in place).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pyiip.model import Display
from pyiip.process.rgbx import pack_rgbx, unpack_rgbx
from pyiip.process.transfer import Transfer

__all__ = ["Transfer", "apply_display", "default_minmax", "effective_minmax", "needs_processing"]

#: iipsrv's rule for a degenerate range: |max - min| <= 1e-30 scales by 1e30 instead.
_DEGENERATE = 1e-30
_HUGE = 1e30
#: Inverted jet: a mixed value above this is taken as above max (+inf); up to it, as max rounded up.
_GAP = 1 + 2.0**-19


def needs_processing(dtype: np.dtype, display: Display) -> bool:
    """False only when the data is uint8 and display.is_identity (then pixels are passed unchanged).

    iipsrv-astro normalises every bit depth, so any other type needs the pipeline
    even with default parameters.
    """
    return not (np.dtype(dtype) == np.uint8 and display.is_identity)


def default_minmax(
    dtype: np.dtype, channels: int, smin: Sequence[float] | None, smax: Sequence[float] | None
) -> np.ndarray:
    """(channels, 2) float64 array of per-channel min/max.

    From SMinSampleValue/SMaxSampleValue when given (a single value applies to all
    channels; missing trailing values fall back to the defaults), else the type's
    full range for integers. As in iipsrv-astro, an integer max of 0 means "unset"
    and gives the full range. Float data without tags, or with both tags 0 (what
    astro reads when they are absent, and then divides by zero), gets NaN entries:
    the caller must compute those from the data.
    """
    dtype = np.dtype(dtype)
    out = np.full((channels, 2), np.nan)
    is_int = dtype.kind in "iub"
    if dtype.kind == "b":
        out[:] = (0.0, 1.0)
    elif is_int:
        info = np.iinfo(dtype)
        out[:] = (float(info.min), float(info.max))

    def expand(values: Sequence[float] | None) -> np.ndarray:
        if values is None:
            return np.full(channels, np.nan)
        vals = np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
        if vals.size == 0:
            return np.full(channels, np.nan)
        if vals.size == 1:
            return np.full(channels, vals[0])
        full = np.full(channels, np.nan)
        n = min(channels, vals.size)
        full[:n] = vals[:n]
        return full

    lows, highs = expand(smin), expand(smax)
    for c in range(channels):
        lo, hi = lows[c], highs[c]
        if is_int and (math.isnan(hi) or hi == 0):
            continue  # astro: no (or zero) max tag -> full integer range, whatever min says
        if not is_int and lo == 0 and hi == 0:
            continue  # float with both tags 0: unset, computed from the data by the caller
        if not math.isnan(lo):
            out[c, 0] = lo
        if not math.isnan(hi):
            out[c, 1] = hi
    return out


# --------------------------------------------------------------------------- channel plan


@dataclass(frozen=True, slots=True)
class ChannelMix:
    """Output channels as linear combinations of normalised input channels.

    ``rows[k]`` lists (input channel, weight) pairs with non-zero weights; with SHD
    the only input channel is the shaded plane, numbered 0.
    """

    rows: tuple[tuple[tuple[int, float], ...], ...]
    shade: tuple[float, float] | None


@lru_cache(maxsize=256)
def channel_mix(
    channels: int, twist: tuple[tuple[float, ...], ...] | None, shade: tuple[float, float] | None, colour_mapped: bool
) -> ChannelMix:
    """CTW with the astro semantics, then flatten (2 -> 1, >3 -> 3), then CMP keeps channel 0.

    Astro keeps the channel count: only min(rows, channels) outputs are computed (from
    the untouched inputs) into the first channels, the rest pass through. Rows are cut
    to the channel count; short rows use their first coefficients. SHD needs 3
    channels and is ignored on fewer (iipsrv would read past the buffer).
    """
    use_shade = shade if shade is not None and channels >= 3 else None
    n = 1 if use_shade else channels
    matrix = np.eye(n)
    for k, row in enumerate((twist or ())[:n]):
        coeffs = [c if math.isfinite(c) else 0.0 for c in row[:n]]
        matrix[k] = 0.0
        matrix[k, : len(coeffs)] = coeffs
    keep = [0] if colour_mapped or n <= 2 else [0, 1, 2]
    rows = tuple(tuple((j, float(matrix[k, j])) for j in range(n) if matrix[k, j] != 0.0) for k in keep)
    return ChannelMix(rows, use_shade)


def effective_minmax(minmax: np.ndarray, dtype: np.dtype, channels: int, display: Display) -> list[tuple[float, float]]:
    """Defaults (padded if short, NaN -> 0..1) with the request's MINMAX overrides applied.

    Non-finite override values are ignored rather than poisoning every pixel.
    """
    if isinstance(minmax, np.ndarray) and minmax.shape == (channels, 2):
        rows = minmax.tolist()
    else:
        rows = np.asarray(minmax, dtype=np.float64).reshape(-1, 2)[:channels].tolist()
    if len(rows) < channels:
        rows += default_minmax(dtype, channels, None, None)[len(rows) :].tolist()
    table = [(lo if math.isfinite(lo) else 0.0, hi if math.isfinite(hi) else 1.0) for lo, hi in rows]
    for ch, lo, hi in display.minmax:
        if 0 <= ch < channels and math.isfinite(lo) and math.isfinite(hi):
            table[ch] = (float(lo), float(hi))
    return table


# --------------------------------------------------------------------------- linear stage


def _normalise(plane: np.ndarray, lo: float, hi: float, weight: float, out: np.ndarray) -> np.ndarray:
    """out = weight * (plane - lo) / (hi - lo); call under np.errstate.

    The exact path (float64 ``out``), and 32/64-bit samples, work in float64 and
    divide, so a sample equal to max gives exactly ``weight``. float32 and 8/16-bit
    samples work in float32 with two refinements over iipsrv's float32 min/max:
    min is subtracted as a float32 pair (high part, then the rounding remainder),
    so values just above min keep their relative precision (which gamma < 1
    magnifies); and the scale is nudged up by 2**-21, so a sample equal to max
    still reaches ``weight`` while a multiply replaces the division. Non-finite samples give 0 (astro: background),
    and |max - min| <= 1e-30 scales by 1e30.
    """
    ftype = out.dtype.type
    diff = hi - lo
    lo_high = np.float32(lo)
    lo_low = np.float32(lo - float(lo_high))
    if (
        ftype is np.float64
        or plane.dtype.itemsize > 4
        or (plane.dtype.kind in "iu" and plane.dtype.itemsize == 4)
        or float(lo_high) + float(lo_low) != lo  # min not representable as a float32 pair
    ):
        work = out if ftype is np.float64 else np.empty(out.shape, np.float64)
        np.subtract(plane, np.float64(lo), out=work, casting="unsafe")
        if abs(diff) <= _DEGENERATE:
            np.multiply(work, _HUGE * weight, out=work)
        elif (diff / weight) * weight == diff:
            np.divide(work, diff / weight, out=work)
        else:
            np.divide(work, diff, out=work)
            np.multiply(work, weight, out=work)
        if work is not out:
            np.copyto(out, work, casting="unsafe")
    else:
        np.subtract(plane, lo_high, out=out, casting="unsafe")
        if lo_low:
            np.subtract(out, lo_low, out=out)
        factor = _HUGE * weight if abs(diff) <= _DEGENERATE else weight / diff * (1 + 2.0**-21)
        factor = math.copysign(min(abs(factor), 1e37), factor)  # finite in float32: min * factor stays 0
        np.multiply(out, ftype(factor), out=out)
    # Check the contiguous result, not the (often strided) samples: a non-finite
    # sample always gives a non-finite result; overflow (1e30 rule) may too, so the
    # samples are only looked at when something is found.
    if plane.dtype.kind in "fc" and not np.isfinite(out).all():
        out[~np.isfinite(plane)] = 0
    return out


def _shade(normals: list[np.ndarray], angles: tuple[float, float]) -> np.ndarray:
    """SHD: clamp(0.5 * dot(light, -(2n - 1)), 0, 1); all-zero normals give 0.

    The light comes from ``h`` degrees clockwise from 12 o'clock at elevation ``v``.
    """
    h, v = angles
    a = math.radians(h)
    sy = math.cos(a)
    sx = math.sqrt(max(0.0, 1.0 - sy * sy)) * (-1.0 if h > 180 else 1.0)
    sz = -math.sin(math.radians(v))
    norm = math.sqrt(sx * sx + sy * sy + sz * sz)
    sx, sy, sz = sx / norm, sy / norm, sz / norm
    nx, ny, nz = normals
    ftype = nx.dtype.type
    dot = ftype(-2 * sx) * nx + ftype(-2 * sy) * ny + ftype(-2 * sz) * nz
    dot += ftype(sx + sy + sz)
    dot *= ftype(0.5)
    dot[(nx == 0) & (ny == 0) & (nz == 0)] = 0
    return np.clip(dot, 0, 1, out=dot)


def _linear(
    data: np.ndarray, lohi: list[tuple[float, float]], plan: ChannelMix, ftype: type, above_max: bool = False
) -> list[np.ndarray]:
    """One float plane per output channel: sum(weight * normalised input).

    A row of one input folds its weight into that input's normalisation (exact for
    weight 1: permutations and mono mode); a mixing row sums weighted copies of
    inputs normalised once each. Identical rows share one array (mono mode sends
    three identical CTW rows).

    ``above_max`` (inverted jet) asks for values above 1 to be told apart from 1
    itself, which float32 rounding cannot do: a one-input row compares the samples
    with max in float64 and sends those above to +inf; a mixed row sends values
    above _GAP (1 plus a 2**-19 margin) there.
    """
    h, w, _ = data.shape
    normalised: dict[int, np.ndarray] = {}
    if plan.shade is not None:
        normals = [_normalise(data[:, :, j], *lohi[j], 1.0, np.empty((h, w), ftype)) for j in range(3)]
        normalised[0] = _shade(normals, plan.shade)

    def unit(j: int) -> np.ndarray:
        if j not in normalised:
            normalised[j] = _normalise(data[:, :, j], *lohi[j], 1.0, np.empty((h, w), ftype))
        return normalised[j]

    planes: list[np.ndarray] = []
    done: dict[tuple[tuple[int, float], ...], np.ndarray] = {}
    for row in plan.rows:
        if row not in done:
            out: np.ndarray = np.zeros((h, w), ftype) if not row else np.empty((h, w), ftype)
            if len(row) == 1 and plan.shade is None:
                j, weight = row[0]
                _normalise(data[:, :, j], *lohi[j], weight, out)
                if above_max:
                    _above_one(data[:, :, j], *lohi[j], weight, out)
            elif row:
                tmp: np.ndarray = np.empty((h, w), ftype)
                for i, (j, weight) in enumerate(row):
                    np.multiply(unit(j), ftype(weight), out=out if i == 0 else tmp)
                    if i:
                        out += tmp
                if above_max:
                    np.copyto(out, ftype(np.inf), where=out > ftype(_GAP))
            done[row] = out
        planes.append(done[row])
    return planes


def _above_one(plane: np.ndarray, lo: float, hi: float, weight: float, out: np.ndarray) -> None:
    """Send to +inf where weight * (plane - lo) / (hi - lo) > 1, decided in float64 on the samples."""
    diff = hi - lo
    bound = hi if weight == 1.0 else lo + (diff / weight if abs(diff) > _DEGENERATE else _DEGENERATE / weight)
    rising = (diff > 0) == (weight > 0) if abs(diff) > _DEGENERATE else weight > 0
    above = np.greater(plane, np.float64(bound)) if rising else np.less(plane, np.float64(bound))
    if plane.dtype.kind == "f":
        above &= np.abs(plane) < np.inf  # non-finite samples stay background (0)
    np.copyto(out, out.dtype.type(np.inf), where=above)


# --------------------------------------------------------------------------- output assembly


def _assemble(grey: list[np.ndarray]) -> np.ndarray:
    """Stack 1 or 3 uint8 (h, w) planes into a C-contiguous (h, w, 1|3) array."""
    if len(grey) == 1:
        return grey[0][:, :, None]
    if grey[0] is grey[1] is grey[2] and np.little_endian:
        packed = grey[0].astype(np.uint32)
        packed *= 0x010101  # bytes l, l, l, 0
        return unpack_rgbx(packed)
    h, w = grey[0].shape
    out = np.empty((h, w, 3), np.uint8)
    for k in range(3):
        out[:, :, k] = grey[k]  # inner loop runs along rows: fast despite the stride
    return out


# --------------------------------------------------------------------------- integer tables


@lru_cache(maxsize=64)
def _int_table(dtype_str: str, lo: float, hi: float, weight: float, transfer: Transfer) -> np.ndarray:
    """Exact transfer for every raw value of an 8/16-bit integer type, indexed by bit pattern."""
    dtype = np.dtype(dtype_str)
    raw = np.arange(2 ** (8 * dtype.itemsize), dtype=np.uint64).astype(f"u{dtype.itemsize}").view(dtype)
    x = raw.astype(np.float64)
    diff = hi - lo
    with np.errstate(all="ignore"):
        x = weight * ((x - lo) / diff if abs(diff) > _DEGENERATE else (x - lo) * _HUGE)
    levels = transfer.levels(x)
    table = pack_rgbx(levels) if transfer.colormap else np.ascontiguousarray(levels[:, 0])
    table.flags.writeable = False  # shared by every request through the cache
    return table


def _render_int(data: np.ndarray, lohi: list[tuple[float, float]], plan: ChannelMix, transfer: Transfer) -> np.ndarray:
    """8/16-bit data whose outputs each come from one input channel: one exact table lookup each."""
    unsigned = np.dtype(f"u{data.dtype.itemsize}")
    outs: list[np.ndarray] = []
    done: dict[tuple[tuple[int, float], ...], np.ndarray] = {}
    for row in plan.rows:
        if row not in done:
            j, weight = row[0] if row else (0, 0.0)
            table = _int_table(data.dtype.str, *lohi[j], weight, transfer)
            index = data[:, :, j].view(unsigned)
            done[row] = np.take(table, index, mode="wrap")
        outs.append(done[row])
    if transfer.colormap:
        return unpack_rgbx(np.ascontiguousarray(outs[0]))
    return _assemble(outs)


# --------------------------------------------------------------------------- entry points


def _setup(display: Display, channels: int) -> tuple[Transfer, ChannelMix]:
    """The per-request constants. Only the plan is cached (by what it depends on): a cache keyed on the
    whole Display would keep every request's MINMAX list alive, outside any budget."""
    transfer = Transfer.from_display(display)
    return transfer, channel_mix(channels, display.twist or None, display.shade, transfer.colormap is not None)


def apply_display(data: np.ndarray, minmax: np.ndarray, display: Display, exact: bool = False) -> np.ndarray:
    """Render raw samples for display; returns C-contiguous (h, w, 1) or (h, w, 3) uint8.

    data: (h, w, c) (or (h, w)) samples straight from the TIFF, any integer or float
    type. minmax: (c, 2) defaults; display.minmax overrides are applied here
    (channels out of range ignored). Follows iipsrv-astro's JTL pipeline; see the
    module docstring for how it is made fast. ``exact`` forces the float64 path: the reference the
    fast paths are tested against.
    """
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise ValueError(f"expected (h, w, c) samples, got shape {data.shape}")
    if data.dtype.kind == "b":
        data = data.view(np.uint8)
    h, w, channels = data.shape
    lohi = effective_minmax(minmax, data.dtype, channels, display)
    transfer, plan = _setup(display, channels)

    if h == 0 or w == 0 or transfer.contrast == 0:  # CNT=0: v * 255 * 0 is black everywhere
        return np.zeros((h, w, 3 if transfer.colormap or len(plan.rows) == 3 else 1), np.uint8)

    if (
        not exact
        and data.dtype.kind in "iu"
        and data.dtype.itemsize <= 2
        and plan.shade is None
        and all(len(row) <= 1 for row in plan.rows)
    ):
        return _render_int(data, lohi, plan, transfer)

    with np.errstate(all="ignore"):
        if exact or not transfer.fast:
            planes = _linear(data, lohi, plan, np.float64)
            levels = [transfer.levels(p) for p in planes]
            if transfer.colormap:
                return np.ascontiguousarray(levels[0])
            return np.ascontiguousarray(np.concatenate(levels, axis=2))
        planes = _linear(data, lohi, plan, np.float32, transfer.isolated_top)
        if transfer.colormap:
            return transfer.colour(planes[0], mixed=len(plan.rows[0]) > 1)
        drawn: dict[int, np.ndarray] = {}
        for p, row in zip(planes, plan.rows, strict=True):
            if id(p) not in drawn:
                drawn[id(p)] = np.empty((h, w), np.uint8)
                transfer.grey(p, drawn[id(p)], mixed=len(row) > 1)
        return _assemble([drawn[id(p)] for p in planes])
