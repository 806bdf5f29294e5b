"""Fetch RLMRec's published data bundle and unpack one dataset into ``data/<name>/``.

    python data/download.py yelp            # or amazon, steam
    python data/download.py yelp --archive ~/Downloads/data.tar.gz   # already downloaded

RLMRec ships its three datasets as one ``data.tar.gz`` split into parts
(``data.tar.gz00``, ``data.tar.gz01``, ...) in its repository's ``data/`` folder. This script
downloads the parts (each kept in ``data/.cache/rlmrec/`` once complete, so an interrupted
download resumes), joins them, extracts only the requested dataset's known files, and
checks their sha256 against the published values where we know them (the Yelp
matrices). Every file's checksum is written to ``data/<name>/SHA256SUMS``. Offline, it
says so and exits with status 1.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

DATASETS = ("amazon", "yelp", "steam")
BASE_URL = "https://raw.githubusercontent.com/HKUDS/RLMRec/main/data/"
PART_NAME = "data.tar.gz{:02d}"
FILES = ("trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl", "usr_prf.pkl", "itm_prf.pkl",
         "usr_emb_np.pkl", "itm_emb_np.pkl")
# Published values: the Yelp matrices are byte-identical to RLMRec's bundle (see ../shared/data/README.md).
KNOWN_SHA256 = {
    "yelp/trn_mat.pkl": "2306f5b9de8f3dd3342744d937a45b04abd22ede422304a549fb324e12e5f6bd",
    "yelp/val_mat.pkl": "33aaf3bd27bd25d7d3e8223700fbd2d5400feec217c9ce09c87785460bcb355b",
    "yelp/tst_mat.pkl": "3007de4f5955223bf7752f59cadb3b069d92acb879987e7eee286f252772a564",
}


class DownloadError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path, timeout: float) -> bool:
    """Download ``url`` to ``dest`` (atomically). False on HTTP 404; raises when offline."""
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except urllib.error.HTTPError as e:
        tmp.unlink(missing_ok=True)
        if e.code == 404:
            return False
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {url} ({reason}). Are you offline? Download the parts "
                            f"by hand into {dest.parent} (or pass --archive FILE) and run again") from e
    tmp.replace(dest)
    return True


def download_parts(base_url: str, cache: Path, timeout: float, max_parts: int = 100) -> list[Path]:
    cache.mkdir(parents=True, exist_ok=True)
    parts = []
    for k in range(max_parts):
        dest = cache / PART_NAME.format(k)
        if not dest.exists():
            print(f"downloading {base_url}{dest.name}", file=sys.stderr)
            if not fetch(base_url + dest.name, dest, timeout):
                break
        parts.append(dest)
    if not parts:
        raise DownloadError(f"no archive parts found at {base_url} ({PART_NAME.format(0)} is missing)")
    return parts


def extract(archive: io.BufferedIOBase, name: str, out: Path) -> list[Path]:
    """Extract ``<...>/<name>/<known file>`` members of a tar.gz stream into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=archive, mode="r|gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 2 and parts[-2] == name and parts[-1] in FILES:
                dest = out / parts[-1]
                src = tar.extractfile(member)
                with open(dest.with_suffix(".tmp"), "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
                dest.with_suffix(".tmp").replace(dest)
                written.append(dest)
    if not written:
        raise DownloadError(f"the archive holds no '{name}/' folder with {', '.join(FILES[:3])}")
    return written


class _Joined(io.RawIOBase):
    """Read several files as one stream (the split archive), without a joined copy on disk."""

    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while self.files:
            n = self.files[0].readinto(buf)
            if n:
                return n
            self.files.pop(0).close()
        return 0


def verify(name: str, files: list[Path], known: dict[str, str]) -> dict[str, str]:
    sums = {f.name: sha256(f) for f in files}
    bad = [f"{fn}: expected {known[f'{name}/{fn}']}, got {h}" for fn, h in sums.items()
           if f"{name}/{fn}" in known and known[f"{name}/{fn}"] != h]
    if bad:
        for f in files:
            f.unlink(missing_ok=True)
        raise DownloadError("checksum mismatch, files removed:\n  " + "\n  ".join(bad))
    missing = [fn for fn in sums if f"{name}/{fn}" not in known]
    if missing:
        print(f"note: no published checksum for {', '.join(missing)}; recorded in SHA256SUMS", file=sys.stderr)
    return sums


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--out-dir", default=None,
                   help="parent folder of the dataset folder (default: $SEMREC_HOME/data, or ./data)")
    p.add_argument("--base-url", default=BASE_URL, help="where the archive parts live")
    p.add_argument("--archive", help="a local data.tar.gz (or its first part; the others are found beside it)")
    p.add_argument("--checksums", help="JSON {'yelp/trn_mat.pkl': sha256, ...} to check instead of the built-in values")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    args = p.parse_args(argv)
    from semrec.common.io import data_root

    out_root = Path(args.out_dir) if args.out_dir else data_root()
    known = json.loads(Path(args.checksums).read_text()) if args.checksums else KNOWN_SHA256
    try:
        if args.archive:
            first = Path(args.archive)
            if not first.exists():
                raise DownloadError(f"{first}: no such file")
            parts = sorted(first.parent.glob(first.name[:-2] + "[0-9][0-9]")) if first.name[-2:].isdigit() else [first]
        else:
            parts = download_parts(args.base_url, out_root / ".cache" / "rlmrec", args.timeout)
        target = out_root / args.dataset
        stream = io.BufferedReader(_Joined(parts), 1 << 20)
        try:
            files = extract(stream, args.dataset, target)
        except tarfile.TarError as e:
            raise DownloadError(f"the archive is damaged ({e}); delete {parts[0].parent} and download again") from e
        sums = verify(args.dataset, files, known)
        (target / "SHA256SUMS").write_text("".join(f"{h}  {fn}\n" for fn, h in sorted(sums.items())))
    except DownloadError as e:
        print(f"download.py: {e}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: {len(files)} files in {target} ({', '.join(sorted(sums))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
