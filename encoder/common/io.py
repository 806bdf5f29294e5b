"""File helpers every part of semrec uses: safe pickles, atomic writes, exclusive run folders.

Nothing here knows about recommenders; the encoder, ``generation/``, ``data/`` and the
benchmarks import from here (data flows one way: these helpers <- data <- models <- training <- CLI).

Pickles are read with :class:`SafeUnpickler`, which only admits numpy, scipy.sparse and plain
builtin types, so a pickle downloaded from the internet cannot run code. It cannot crash the
process either: scipy rebuilds a pickled sparse matrix from its raw arrays without checking
them, and its compiled routines trust those arrays (an index outside the shape makes them read
and write out of bounds). :func:`load_pickle` therefore checks every sparse matrix it finds
(shape, index dtypes and ranges, ``indptr``, lengths, values) with numpy alone and returns a
matrix rebuilt from the checked arrays.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


class BusyError(RuntimeError):
    """A run folder is in use by another process."""


_SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                  "str", "bytes", "bytearray", "bool", "slice", "range"}
_SAFE_NUMPY = {"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"}
_SPARSE_CLASS = re.compile(r"(coo|csr|csc|bsr|dok|lil|dia)_(matrix|array)")


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that only resolves numpy arrays, scipy sparse matrices and plain builtins."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            (module == "builtins" and name in _SAFE_BUILTINS)
            or (module == "collections" and name in {"OrderedDict", "defaultdict"})
            or (module == "_codecs" and name == "encode")
            # dok_matrix pickles through copyreg; the classes it rebuilds are checked here too
            or (module == "copyreg" and name == "_reconstructor")
            or (module in {"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                           "numpy.core.numeric", "numpy._core.numeric"} and name in _SAFE_NUMPY)
            or (module.startswith("numpy.dtypes") and name.endswith("DType"))
            or (module.startswith("scipy.sparse") and _SPARSE_CLASS.fullmatch(name) is not None)
        )
        if not allowed:
            raise pickle.UnpicklingError(
                f"refusing to load '{module}.{name}': only numpy, scipy.sparse and builtin "
                "types are allowed in dataset pickles")
        return super().find_class(module, name)


# ----- sparse matrices out of a pickle ---------------------------------------------------------
def _shape(state: dict) -> tuple[int, int]:
    shape = state.get("_shape")
    if (not isinstance(shape, tuple) or len(shape) != 2
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ValueError(f"its shape {shape!r} is not two non-negative integers")
    return int(shape[0]), int(shape[1])


def _index(a: Any, what: str, bound: int | None = None) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        desc = f"a {a.ndim}-d {a.dtype} array" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"its {what} must be a 1-d integer array, not {desc}")
    a = a.astype(np.int64)
    if bound is not None and a.size and (a.min() < 0 or a.max() >= bound):
        raise ValueError(f"its {what} hold values outside [0, {bound}) (from {a.min()} to {a.max()})")
    return a


def _values(a: Any, n: int, ndim: int = 1) -> np.ndarray:
    if (not isinstance(a, np.ndarray) or a.ndim != ndim
            or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_)):
        desc = f"a {a.ndim}-d {a.dtype} array" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"its values must be a {ndim}-d numeric array, not {desc}")
    if a.shape[0] != n:
        raise ValueError(f"it has {a.shape[0]} values for {n} stored positions")
    return a


def _compressed(state: dict, major: int, minor: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked (major index, minor index) of every stored entry of a CSR/CSC/BSR layout."""
    indptr = _index(state.get("indptr"), "indptr")
    indices = _index(state.get("indices"), "indices", minor)
    if len(indptr) != major + 1:
        raise ValueError(f"its indptr has {len(indptr)} entries; {major + 1} expected")
    if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise ValueError(f"its indptr is not non-decreasing from 0 to {len(indices)} (the number of indices)")
    return np.repeat(np.arange(major, dtype=np.int64), np.diff(indptr)), indices


def _triplets(kind: str, state: dict, m: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, value) of every stored entry, each checked against the shape ``(m, n)``."""
    if kind == "coo":
        coords = state.get("coords")
        if coords is None:  # written by scipy < 1.13
            coords = (state.get("row"), state.get("col"))
        if not isinstance(coords, tuple) or len(coords) != 2:
            raise ValueError("its coordinates are not a (row, col) pair")
        row, col = _index(coords[0], "row indices", m), _index(coords[1], "column indices", n)
        if len(row) != len(col):
            raise ValueError(f"it has {len(row)} row and {len(col)} column indices")
        return row, col, _values(state.get("data"), len(row))
    if kind in ("csr", "csc"):
        major, minor = (m, n) if kind == "csr" else (n, m)
        a, b = _compressed(state, major, minor)
        data = _values(state.get("data"), len(b))
        return (a, b, data) if kind == "csr" else (b, a, data)
    if kind == "bsr":
        data = state.get("data")
        if not isinstance(data, np.ndarray) or data.ndim != 3 or 0 in data.shape[1:]:
            raise ValueError("its blocks are not a 3-d array")
        r, c = data.shape[1:]
        if m % r or n % c:
            raise ValueError(f"its block size {r}x{c} does not divide its shape {m}x{n}")
        brow, bcol = _compressed(state, m // r, n // c)
        data = _values(data, len(bcol), ndim=3)
        ir, ic = np.meshgrid(np.arange(r), np.arange(c), indexing="ij")
        row = (brow[:, None, None] * r + ir).ravel()
        col = (bcol[:, None, None] * c + ic).ravel()
        return row, col, data.reshape(-1)
    if kind == "dia":
        offsets = _index(state.get("offsets"), "diagonal offsets")
        data = state.get("data")
        if not isinstance(data, np.ndarray) or data.ndim != 2:
            raise ValueError("its diagonals are not a 2-d array")
        data = _values(data, len(offsets), ndim=2)
        col = np.broadcast_to(np.arange(data.shape[1]), data.shape)
        row = col - offsets[:, None]
        keep = (row >= 0) & (row < m) & (col < n)
        return row[keep], col[keep], data[keep]
    if kind == "lil":
        rows, data = state.get("rows"), state.get("data")
        if not all(isinstance(a, np.ndarray) and a.shape == (m,) and a.dtype == object for a in (rows, data)):
            raise ValueError(f"its rows are not {m} lists")
        r, c, v = [], [], []
        for i, (cols, vals) in enumerate(zip(rows, data)):
            if not isinstance(cols, list) or not isinstance(vals, list) or len(cols) != len(vals):
                raise ValueError(f"its row {i} does not hold matching lists of columns and values")
            r += [i] * len(cols)
            c += cols
            v += vals
        return _lists(r, c, v, m, n)
    if kind == "dok":
        entries = state.get("_dict")
        if not isinstance(entries, dict) or not all(isinstance(k, tuple) and len(k) == 2 for k in entries):
            raise ValueError("its entries are not a {(row, col): value} dict")
        return _lists([k[0] for k in entries], [k[1] for k in entries], list(entries.values()), m, n)
    raise ValueError(f"{kind} matrices are not supported")


def _lists(r: list, c: list, v: list, m: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in r + c):
        raise ValueError("its indices are not all integers")
    if not all(isinstance(x, (int, float, np.number)) for x in v):
        raise ValueError("its values are not all numbers")
    return (_index(np.asarray(r, dtype=np.int64), "row indices", m),
            _index(np.asarray(c, dtype=np.int64), "column indices", n), np.asarray(v))


def checked_sparse(obj: Any) -> sp.spmatrix:
    """A sparse matrix of the same format as ``obj``, rebuilt from its checked raw arrays.

    Raises:
        ValueError: what is wrong with the arrays (the shape, an index out of range, a broken
            ``indptr``, lengths that disagree, non-numeric values).
    """
    kind = _SPARSE_CLASS.fullmatch(type(obj).__name__)
    if kind is None:
        raise ValueError(f"{type(obj).__name__} is not a supported sparse matrix")
    state = vars(obj)
    m, n = _shape(state)
    row, col, data = _triplets(kind.group(1), state, m, n)
    return sp.coo_matrix((data, (row, col)), shape=(m, n)).asformat(kind.group(1))


def _check_tree(obj: Any, depth: int = 0) -> Any:
    """Replace every sparse matrix inside ``obj`` (nested in dicts, lists, tuples) by a checked copy."""
    if sp.issparse(obj):
        return checked_sparse(obj)
    if depth > 4:
        return obj
    if isinstance(obj, dict):
        return type(obj)((k, _check_tree(v, depth + 1)) for k, v in obj.items()) \
            if any(sp.issparse(v) or isinstance(v, (dict, list, tuple)) for v in obj.values()) else obj
    if isinstance(obj, (list, tuple)) and any(sp.issparse(v) or isinstance(v, (dict, list, tuple)) for v in obj):
        return type(obj)(_check_tree(v, depth + 1) for v in obj)
    return obj


def load_pickle(path: str | Path) -> Any:
    """Load a pickle with :class:`SafeUnpickler` and check every sparse matrix in it.

    Raises:
        FileNotFoundError: no such file.
        DataError: refused, unreadable or inconsistent content (the message names the file).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f).load()
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a data error
        raise DataError(f"{path}: cannot be read as a dataset pickle ({e})") from e
    try:
        return _check_tree(obj)
    except ValueError as e:
        raise DataError(f"{path}: a corrupt sparse matrix: {e}") from None


# ----- writing ----------------------------------------------------------------------------------
def atomic_write(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(payload)
        tmp.replace(path)
    except BaseException as e:  # a full disk, a read-only folder, a kill: leave no half-written file behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:  # a failed write() names no file: name it
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` atomically."""
    atomic_write(path, text.encode("utf-8"))


def write_pickle(path: str | Path, obj: Any) -> None:
    """Pickle ``obj`` atomically (protocol 4, readable by :func:`load_pickle`)."""
    atomic_write(path, pickle.dumps(obj, protocol=4))


def _reading(path: Path, error: type[Exception], what: str = "file") -> Exception:
    """The error to raise when ``path`` cannot be opened (a folder, missing, unreadable)."""
    if path.is_dir():
        return error(f"{path}: is a folder, not a {what}")
    if not path.exists():
        return error(f"{path}: no such {what}")
    return error(f"{path}: cannot be read")


def text_lines(path: str | Path, error: type[Exception] = DataError) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for every line of a UTF-8 text file (gzipped if it ends in ``.gz``),
    without its line break; a leading byte-order mark is dropped. A line that is not UTF-8, or
    a file that cannot be opened, raises ``error`` naming the file (and line)."""
    import gzip

    path = Path(path)
    try:
        f = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as e:
        raise _reading(path, error) from e
    with f:
        try:
            for no, raw in enumerate(f, 1):
                if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise error(f"{path}:{no}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                f"{e.start + 1})") from None
                yield no, line.rstrip("\r\n")
        except (OSError, EOFError) as e:  # a truncated or corrupt gzip stream
            raise error(f"{path}: cannot be read ({e})") from None


def read_text(path: str | Path, error: type[Exception] = DataError) -> str:
    """A whole UTF-8 text file (byte-order mark dropped); errors name the file and line."""
    return "\n".join(line for _, line in text_lines(path, error))


def parse_json(text: str, where: str, error: type[Exception] = DataError) -> Any:
    """``json.loads(text)``; invalid or absurdly nested JSON raises ``error`` naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply to be data") from None


def json_lines(path: str | Path, error: type[Exception] = DataError) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-empty line of a JSON-lines file (gzipped if it ends
    in ``.gz``); a line that is not a JSON object raises ``error`` naming the file and line."""
    path = Path(path)
    for no, line in text_lines(path, error):
        if not line.strip():
            continue
        obj = parse_json(line, f"{path}:{no}", error)
        if not isinstance(obj, dict):
            raise error(f"{path}:{no}: expected a JSON object, got a JSON {_json_kind(obj)}")
        yield no, obj


def _json_kind(obj: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(obj), "number")


def is_int(value: Any) -> bool:
    """Whether a JSON value is an integer (not a bool, a float or a string of digits)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_cell(cell: str) -> int | None:
    """A text cell of ASCII digits as an ``int`` (``None`` otherwise: no sign, ``_``, spaces or
    other scripts' digits, all of which Python's ``int()`` would accept)."""
    return int(cell) if cell.isascii() and cell.isdigit() else None


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


@contextlib.contextmanager
def exclusive(lock: str | Path, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` while the block runs, or raise
    :class:`BusyError` with the message ``busy`` if another process holds it.

    The operating system drops the lock when the process ends, even on ``kill -9``, so a killed
    run never leaves a stale lock behind (why a lock file and not a marker file).
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory file locks; give each concurrent run its own folder
        yield
        return
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def home() -> Path:
    """Where datasets and runs live: ``$SEMREC_HOME``, else the current folder (never the installed
    package's folder)."""
    env = os.environ.get("SEMREC_HOME")
    return Path(env).expanduser() if env else Path.cwd()


def data_root() -> Path:
    """Where dataset names are looked up and new datasets go: ``$SEMREC_DATA_DIR`` (a data folder
    of its own), else ``home()/data``."""
    env = os.environ.get("SEMREC_DATA_DIR")
    return Path(env).expanduser() if env else home() / "data"


def runs_root() -> Path:
    """Where a run goes when no ``--out`` is given: ``home()/runs``."""
    return home() / "runs"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_name(name: str, what: str = "dataset", hint: str = "give a folder with --data-dir instead") -> str:
    """``name`` if it is a plain name (letters, digits, ``_ . + -``; no path), else ValueError."""
    if not _NAME.fullmatch(name or "") or ".." in name:
        raise ValueError(f"{what} name {name!r} is not a plain name (letters, digits, '_', '.', '+', '-'); {hint}")
    return name
