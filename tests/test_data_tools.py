"""data/: the demo dataset, the RLMRec bundle download (against a local HTTP server), read_profile."""
import hashlib
import http.server
import io
import json
import pickle
import socket
import tarfile
import threading
from functools import partial

import numpy as np
import pytest

from helpers import random_splits
from semrec.data import download, read_profile
from semrec.common.demo import make_demo
from semrec.encoder.dataset import load_dataset


def test_demo_is_deterministic_and_valid(tmp_path):
    a, b = make_demo(tmp_path / "a"), make_demo(tmp_path / "b")
    for f in sorted(a.glob("*.pkl")):
        assert hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256((b / f.name).read_bytes()).digest(), f.name
    data = load_dataset(a, with_profiles=True)
    assert data.num_users == 800 and data.num_items == 1000
    assert data.user_emb.shape == (800, 64) and data.item_emb.shape == (1000, 64)
    assert data.overlaps() == {"train&valid": 0, "train&test": 0, "valid&test": 0}
    assert (np.diff(data.valid.indptr) > 0).all() and (np.diff(data.test.indptr) > 0).all()


def test_demo_user_profiles_use_training_items_only(tmp_path):
    data = load_dataset(make_demo(tmp_path / "d"), with_profiles=True)
    # every word a user profile names comes from the profiles of the user's training venues
    for u in range(0, 800, 37):
        liked = data.user_profiles[u]["profile"].split("likes ")[1].rstrip(".").split(", ")
        seen = data.train.indices[data.train.indptr[u]:data.train.indptr[u + 1]]
        text = " ".join(data.item_profiles[i]["profile"] + data.item_profiles[i]["reasoning"] for i in seen)
        assert all(w in text for w in liked)


def test_demo_embeddings_carry_the_text_signal(tmp_path):
    data = load_dataset(make_demo(tmp_path / "d"), with_profiles=True)
    # a user's embedding is closer to the venues they visit next than to random venues
    sims = data.user_emb @ data.item_emb.T
    held = data.test.toarray() > 0
    assert sims[held].mean() > sims[~held].mean() + 0.1


def _archive(tmp_path, name="yelp"):
    buf = io.BytesIO()
    mats = random_splits()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fname, obj in zip(["trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl"], mats):
            payload = pickle.dumps(obj)
            info = tarfile.TarInfo(f"data/{name}/{fname}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        info = tarfile.TarInfo("../evil.pkl")  # never extracted: not a known file of the dataset
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    blob = buf.getvalue()
    served = tmp_path / "served"
    served.mkdir()
    third = len(blob) // 3 + 1
    for k in range(3):
        (served / f"data.tar.gz{k:02d}").write_bytes(blob[k * third:(k + 1) * third])
    sums = {f"{name}/{f}": hashlib.sha256(pickle.dumps(m)).hexdigest()
            for f, m in zip(["trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl"], mats)}
    return served, sums


@pytest.fixture
def server(tmp_path):
    served, sums = _archive(tmp_path)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", sums
    httpd.shutdown()


def test_download_joins_parts_verifies_and_unpacks(server, tmp_path):
    url, sums = server
    (tmp_path / "sums.json").write_text(json.dumps(sums))
    out = tmp_path / "data"
    assert download.main(["yelp", "--base-url", url, "--out-dir", str(out), "--checksums", str(tmp_path / "sums.json")]) == 0
    data = load_dataset(out / "yelp")
    assert data.train.shape == (30, 40)
    assert len((out / "yelp" / "SHA256SUMS").read_text().splitlines()) == 3
    assert sorted(p.name for p in (out / ".cache" / "rlmrec").iterdir()) == [f"data.tar.gz{k:02d}" for k in range(3)]
    assert not (tmp_path / "evil.pkl").exists()


def test_download_rejects_a_checksum_mismatch(server, tmp_path, capsys):
    url, _ = server  # the built-in Yelp checksums do not match the fake archive
    out = tmp_path / "data"
    assert download.main(["yelp", "--base-url", url, "--out-dir", str(out)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (out / "yelp" / "trn_mat.pkl").exists()


def test_download_offline_says_so(tmp_path, capsys):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = download.main(["steam", "--base-url", f"http://127.0.0.1:{port}/", "--out-dir", str(tmp_path), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot download" in err and "offline" in err


def test_download_from_a_local_archive(server, tmp_path):
    url, sums = server
    served = tmp_path / "served"
    (tmp_path / "sums.json").write_text(json.dumps(sums))
    assert download.main(["yelp", "--archive", str(served / "data.tar.gz00"), "--out-dir", str(tmp_path / "d"),
                          "--checksums", str(tmp_path / "sums.json")]) == 0
    assert (tmp_path / "d" / "yelp" / "tst_mat.pkl").exists()
    assert download.main(["amazon", "--archive", str(served / "data.tar.gz00"), "--out-dir", str(tmp_path / "d")]) == 1


def test_read_profile(tmp_path, capsys):
    folder = make_demo(tmp_path / "demo")
    assert read_profile.main(["--data-dir", str(folder), "--item", "3", "--user", "5"]) == 0
    out = capsys.readouterr().out
    assert "Item 3's profile" in out and "User 5's profile" in out and "PROFILE: " in out
    assert read_profile.main(["--data-dir", str(folder), "--item", "5000"]) == 2
    assert "item 5000 has no profile" in capsys.readouterr().err
    assert read_profile.main(["--data-dir", str(tmp_path)]) == 2


class _Exploit:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned > /dev/null",)


@pytest.mark.parametrize("content, message", [
    (pickle.dumps(_Exploit()), "usr_prf.pkl: cannot be read as a dataset pickle (refusing to load 'posix.system'"),
    (b"\x80\x04 truncated", "usr_prf.pkl: cannot be read as a dataset pickle"),
    (pickle.dumps({0: "just text"}), "usr_prf.pkl: not a profile file"),
    (pickle.dumps(42), "usr_prf.pkl: not a profile file"),
])
def test_read_profile_refused_or_malformed_pickle_exits_2(tmp_path, capsys, content, message):
    (tmp_path / "usr_prf.pkl").write_bytes(content)
    assert read_profile.main(["--data-dir", str(tmp_path), "--user", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("read_profile.py: error: ") and message in err and "Traceback" not in err
