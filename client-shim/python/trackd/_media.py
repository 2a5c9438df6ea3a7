"""Media values for run.log, as W&B's: trackd.Image, trackd.Histogram,
trackd.Table.

Each becomes, in the history row, W&B's own JSON object (an ``image-file``
or ``table-file`` naming its file under the run's ``files/media/…``, or an
inline ``histogram``). libtrackd makes the object, encodes raw pixels as PNG
(zlib), hashes the file (SHA-256) and queues its bytes for the agent: log()
never waits for the transfer. The agent never reads a path: an Image made
from a path is read here, by the user's process.
"""
import ctypes
import io
import json
import math
import os
import sys
from typing import Any, List, Optional, Sequence

from . import _lib
from .errors import InvalidValueError

HISTOGRAM_DEFAULT_BINS = 64
HISTOGRAM_MAX_BINS = 512
TABLE_MAX_ROWS = 10000  # W&B's Table.MAX_ROWS for runs

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Media:
    """Base of the values libtrackd turns into W&B media objects."""

    def _td_media(self, keep: List[Any]) -> "_lib.TdMedia":
        raise NotImplementedError

    def _summary(self) -> dict:
        return {"_type": self._type}


def _png_size(data: bytes):
    if data[:8] == _PNG_MAGIC and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _jpeg_size(data: bytes):
    # The first SOFn marker holds the height and width.
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


class Image(Media):
    """An image: a numpy array (H×W gray, H×W×1/3/4; uint8, or floats in
    [0, 1] scaled to 0–255 as W&B does), a PIL image (when PIL is installed),
    encoded PNG/JPEG bytes, or a path to a PNG/JPEG file; ``caption``
    optional."""

    _type = "image-file"

    def __init__(self, data_or_path: Any, caption: Optional[str] = None):
        self.caption = caption
        self._pixels = None
        self._bytes = None
        self._kind = _lib.TD_MEDIA_PNG
        data = data_or_path
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                data = f.read()
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            size = _png_size(data)
            if size is None:
                size = _jpeg_size(data) if data[:2] == b"\xff\xd8" else None
                self._kind = _lib.TD_MEDIA_JPEG
            if size is None:
                raise InvalidValueError("trackd.Image: bytes are neither a PNG nor a JPEG")
            self._bytes = data
            self.width, self.height = size
            return
        pil = sys.modules.get("PIL.Image")
        if pil is not None and isinstance(data, pil.Image):
            buf = io.BytesIO()
            data.save(buf, format="PNG")
            self._bytes = buf.getvalue()
            self.width, self.height = data.size
            return
        np = sys.modules.get("numpy")
        if np is None or not hasattr(data, "shape"):
            raise InvalidValueError(
                f"trackd.Image: cannot make an image of {type(data).__name__} (numpy array, "
                "PIL image, PNG/JPEG bytes or a path)")
        arr = np.asarray(data)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise InvalidValueError(f"trackd.Image: array of shape {arr.shape} is not an image "
                                    "(H×W, H×W×1, H×W×3 or H×W×4)")
        if arr.dtype != np.uint8:
            arr = arr.astype(float)
            if arr.size and np.nanmax(arr) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        self._pixels = np.ascontiguousarray(arr)
        self.height, self.width = int(arr.shape[0]), int(arr.shape[1])
        self._channels = 1 if arr.ndim == 2 else int(arr.shape[2])
        self._kind = _lib.TD_MEDIA_PIXELS

    @classmethod
    def from_pixels(cls, pixels: bytes, width: int, height: int, channels: int = 3,
                    caption: Optional[str] = None) -> "Image":
        """An image from raw 8-bit pixels (height rows of width × channels
        bytes; channels 1, 3 or 4), without numpy; PNG-encoded by libtrackd."""
        if channels not in (1, 3, 4) or len(pixels) != width * height * channels:
            raise InvalidValueError(f"trackd.Image.from_pixels: {len(pixels)} bytes are not "
                                    f"{height} rows of {width} × {channels}")
        self = cls.__new__(cls)
        self.caption = caption
        self._bytes = None
        self._raw = bytes(pixels)
        self._pixels = None
        self._kind = _lib.TD_MEDIA_PIXELS
        self.width, self.height, self._channels = width, height, channels
        return self

    _raw: Optional[bytes] = None

    def _td_media(self, keep: List[Any]) -> "_lib.TdMedia":
        m = _lib.TdMedia()
        m.kind = self._kind
        m.width, m.height = self.width, self.height
        if self._raw is not None:
            buf = self._raw
            m.channels = self._channels
        elif self._pixels is not None:
            buf = self._pixels.tobytes()
            m.channels = self._channels
        else:
            buf = self._bytes
        keep.append(buf)
        m.data = ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p)
        m.len = len(buf)
        if self.caption is not None:
            cb = str(self.caption).encode("utf-8")
            keep.append(cb)
            m.caption = cb
        return m


class Histogram(Media):
    """A histogram, W&B's: from a sequence of numbers (``num_bins`` equal
    bins, 64 by default, 512 at most) or ``np_histogram=(counts, edges)``."""

    _type = "histogram"

    def __init__(self, sequence: Optional[Sequence[float]] = None,
                 np_histogram: Optional[Any] = None, num_bins: int = HISTOGRAM_DEFAULT_BINS):
        if np_histogram is not None:
            counts, edges = np_histogram
            self.counts = [float(c) for c in counts]
            self.edges = [float(e) for e in edges]
            if len(self.edges) != len(self.counts) + 1:
                raise InvalidValueError("trackd.Histogram: np_histogram needs len(edges) == "
                                        "len(counts) + 1")
            self.values = None
            num_bins = len(self.counts)
        elif sequence is not None:
            self.values = [float(v) for v in (sequence.ravel() if hasattr(sequence, "ravel")
                                              else sequence)]
            self.counts = self.edges = None
        else:
            raise InvalidValueError("trackd.Histogram: give a sequence or np_histogram")
        if not 1 <= num_bins <= HISTOGRAM_MAX_BINS:
            raise InvalidValueError(f"trackd.Histogram: {num_bins} bins; 1 to "
                                    f"{HISTOGRAM_MAX_BINS}")
        self.num_bins = num_bins

    def _td_media(self, keep: List[Any]) -> "_lib.TdMedia":
        m = _lib.TdMedia()
        m.kind = _lib.TD_MEDIA_HISTOGRAM
        m.num_bins = self.num_bins
        if self.values is not None:
            arr = (ctypes.c_double * max(len(self.values), 1))(*self.values)
            keep.append(arr)
            m.values = arr
            m.n_values = len(self.values)
        else:
            counts = (ctypes.c_double * len(self.counts))(*self.counts)
            edges = (ctypes.c_double * len(self.edges))(*self.edges)
            keep.extend((counts, edges))
            m.counts, m.edges = counts, edges
        return m


def _cell(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_cell(x) for x in v]
    return str(v)


class Table(Media):
    """A table, W&B's: ``columns`` and ``data`` (rows), at most 10,000 rows."""

    _type = "table-file"

    def __init__(self, columns: Optional[Sequence[str]] = None,
                 data: Optional[Sequence[Sequence[Any]]] = None):
        rows = [list(r) for r in (data or [])]
        if columns is None:
            columns = [f"col{i}" for i in range(len(rows[0]) if rows else 0)]
        self.columns = [str(c) for c in columns]
        if len(rows) > TABLE_MAX_ROWS:
            raise InvalidValueError(f"trackd.Table: {len(rows)} rows, limit {TABLE_MAX_ROWS} "
                                    "(W&B's Table.MAX_ROWS)")
        for i, r in enumerate(rows):
            if len(r) != len(self.columns):
                raise InvalidValueError(f"trackd.Table: row {i} has {len(r)} cells, "
                                        f"{len(self.columns)} columns")
        self.data = [[_cell(v) for v in r] for r in rows]

    def _td_media(self, keep: List[Any]) -> "_lib.TdMedia":
        text = json.dumps({"columns": self.columns, "data": self.data},
                          separators=(",", ":")).encode("utf-8")
        keep.append(text)
        m = _lib.TdMedia()
        m.kind = _lib.TD_MEDIA_TABLE
        m.data = ctypes.cast(ctypes.c_char_p(text), ctypes.c_void_p)
        m.len = len(text)
        m.ncols = len(self.columns)
        m.nrows = len(self.data)
        return m


MAX_IMAGES = 1024


def images_td_media(images: Sequence[Image], keep: List[Any]) -> "_lib.TdMedia":
    """A list of images, W&B's ``images/separated`` value."""
    if len(images) > MAX_IMAGES:
        raise InvalidValueError(f"trackd: a list of {len(images)} images, limit {MAX_IMAGES}")
    arr = (_lib.TdMedia * len(images))()
    for i, img in enumerate(images):
        arr[i] = img._td_media(keep)
    keep.append(arr)
    m = _lib.TdMedia()
    m.kind = _lib.TD_MEDIA_IMAGES
    m.images = ctypes.cast(arr, ctypes.c_void_p)
    m.n_images = len(images)
    return m
