"""An append-only cache of LLM replies: a killed run restarts where it stopped.

One JSON line per finished request, written with a single ``write`` and flushed as soon as
the reply arrives, so a run killed at any moment keeps every reply it received (a line cut
short by the kill is ignored on reading, and its request is simply asked again). A request is
identified by the SHA-256 of its model, sampling parameters and messages: changing the prompt
or the model makes new requests; re-running the same job pays for nothing twice.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def request_key(params: dict[str, Any], messages: list[dict[str, str]]) -> str:
    """Stable hash of what is sent (model, parameters, messages); never includes the API key."""
    blob = json.dumps({"params": params, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ReplyCache:
    """Replies by request key, backed by a JSON-lines file that only grows.

    Args:
        path: the cache file (created with its folder if absent).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict[str, Any]] = {}
        self.damaged_lines = 0
        if self.path.exists():
            self._read()
        self._fh = None

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["key"]
            except (ValueError, KeyError, TypeError):
                self.damaged_lines += 1  # a line cut short by a kill: its request is asked again
                continue
            # a later success replaces an earlier failure; a failure never hides a success
            if rec.get("status") == "ok" or self.records.get(key, {}).get("status") != "ok":
                self.records[key] = rec
        if data and not data.endswith(b"\n"):
            with open(self.path, "ab") as f:  # start the next record on a fresh line
                f.write(b"\n")

    def get(self, key: str) -> dict[str, Any] | None:
        """The successful record for ``key``, or None (failed records are asked again)."""
        rec = self.records.get(key)
        return rec if rec is not None and rec.get("status") == "ok" else None

    def failed(self, key: str) -> dict[str, Any] | None:
        rec = self.records.get(key)
        return rec if rec is not None and rec.get("status") != "ok" else None

    def add(self, record: dict[str, Any]) -> None:
        """Append one record (must hold ``key`` and ``status``) and flush it to the OS at once."""
        if self._fh is None:
            self._fh = open(self.path, "ab")
        self._fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._fh.flush()
        if record.get("status") == "ok" or self.records.get(record["key"], {}).get("status") != "ok":
            self.records[record["key"]] = record

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "ReplyCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
