"""Your own table in: CSV (renamed columns, any delimiter, gzip), Parquet and a DataFrame give the
same dataset folder as the equivalent RecBole file; bad tables exit 2 naming the column."""
import datetime as dt
import gzip
import hashlib

import numpy as np
import pytest

from semrec.data.prepare import from_dataframe, main
from semrec.data.readers import PrepareError

FILES = ("trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl", "sequences.jsonl", "interactions.jsonl", "items.jsonl",
         "mapper/user.json", "mapper/item.json")
OPTIONS = ["--split", "leave-one-out", "--dedup", "--kcore", "2"]


def rows():
    """(user, item, rating, unix time) for 25 users, with repeats, and a title per item."""
    rng = np.random.default_rng(7)
    out = []
    for u in range(25):
        for n in range(int(rng.integers(3, 9))):
            out.append((f"u{u}", f"m{int(rng.integers(0, 30))}", int(rng.integers(1, 6)),
                        1_600_000_000 + 3600 * (40 * u + n)))
    return out, {f"m{i}": f"Film number {i} ({1990 + i})" for i in range(30)}


def digests(folder):
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}


def write_recbole(folder):
    data, titles = rows()
    folder.mkdir()
    (folder / "x.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" +
                                    "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in data))
    (folder / "x.item").write_text("item_id:token\ttitle:token_seq\n" +
                                   "".join(f"{i}\t{t}\n" for i, t in titles.items()))
    return folder / "x.inter"


@pytest.fixture()
def reference(tmp_path):
    assert main(["recbole", str(write_recbole(tmp_path / "rb")), "--name", "ref", "--out-dir", str(tmp_path),
                 *OPTIONS]) == 0
    return digests(tmp_path / "ref")


def test_csv_gzip_iso_dates_parquet_and_dataframe_match_recbole(tmp_path, reference):
    data, titles = rows()
    # semicolons, renamed columns in another order, a title column
    (tmp_path / "a.csv").write_text("movie;score;who;when;name\n" + "".join(
        f"{i};{r};{u};{t};{titles[i]}\n" for u, i, r, t in data))
    with gzip.open(tmp_path / "b.csv.gz", "wt") as f:  # gzip, tab-separated, ISO 8601 dates
        f.write("who\tmovie\twhen\tscore\tname\n" + "".join(
            f"{u}\t{i}\t{dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()}\t{r}\t{titles[i]}\n"
            for u, i, r, t in data))
    cols = ["--user", "who", "--item", "movie", "--time", "when", "--rating", "score", "--item-text", "name"]
    for src in ("a.csv", "b.csv.gz"):
        assert main(["csv", str(tmp_path / src), "--name", src.split(".")[0], "--out-dir", str(tmp_path), *cols,
                     *OPTIONS]) == 0
    pd = pytest.importorskip("pandas", reason="the DataFrame and Parquet cases need pandas (semrec[test])")
    df = pd.DataFrame(data, columns=["who", "movie", "score", "when"])
    df["name"] = df["movie"].map(titles)
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (semrec[tables])")
    df.to_parquet(tmp_path / "c.parquet")
    assert main(["parquet", str(tmp_path / "c.parquet"), "--name", "c", "--out-dir", str(tmp_path), *cols,
                 *OPTIONS]) == 0
    folder = from_dataframe(df, "d", out_dir=tmp_path, user="who", item="movie", time="when", rating="score",
                            item_text=["name"], split="leave-one-out", dedup=True, kcore=2)
    assert folder == tmp_path / "d"
    names = "abcd"
    try:
        import polars
    except ImportError:
        pass
    else:
        from_dataframe(polars.from_pandas(df), "e", out_dir=tmp_path, user="who", item="movie", time="when",
                       rating="score", item_text=["name"], split="leave-one-out", dedup=True, kcore=2)
        names += "e"
    # the item text is keyed by its own column's name: rename it as RecBole's to compare the files
    for name in names:
        items = tmp_path / name / "items.jsonl"
        items.write_text(items.read_text().replace('"name":', '"title":'))
        assert digests(tmp_path / name) == reference, name
    with pytest.raises(PrepareError, match="already holds a dataset"):
        from_dataframe(df, "d", out_dir=tmp_path, user="who", item="movie")


@pytest.mark.parametrize("text,extra,message", [
    ("who,movie\nu1,m1\n", ["--time", "when"], "no column(s) 'when'; the columns are 'who', 'movie'"),
    ("who,movie,when\nu1,m1,100\nu1,m2,yesterday\n", ["--time", "when"],
     ":3: column 'when': 'yesterday' is neither a number nor an ISO 8601 date"),
    ("who,movie,score\nu1,m1,five\n", ["--rating", "score"], ":2: column 'score': 'five' is not a number"),
    ("who,movie\nu1,\n", [], ":2: column 'movie' is empty"),
    ("who,movie\nu1,m1,extra\n", [], ":2: 3 field(s), the header has 2"),
    ("", [], "empty (no header row)"),
    ("who,movie\n", [], "no rows (the table is empty)"),
])
def test_bad_tables_exit_2_naming_the_column(tmp_path, capsys, text, extra, message):
    (tmp_path / "t.csv").write_text(text)
    assert main(["csv", str(tmp_path / "t.csv"), "--name", "t", "--out-dir", str(tmp_path),
                 "--user", "who", "--item", "movie", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_a_csv_given_as_recbole_or_without_columns_says_what_to_do(tmp_path, capsys):
    (tmp_path / "r.csv").write_text("user_id,item_id,rating,timestamp\n1,10,5,100\n")
    assert main(["recbole", str(tmp_path / "r.csv"), "--name", "r", "--out-dir", str(tmp_path)]) == 2
    assert "not tab-separated, so this is not a RecBole atomic file" in capsys.readouterr().err
    assert main(["csv", str(tmp_path / "r.csv"), "--name", "r", "--out-dir", str(tmp_path)]) == 2
    assert "csv needs --user COLUMN and --item COLUMN" in capsys.readouterr().err
    assert main(["recbole", str(tmp_path / "r.csv"), "--name", "r", "--out-dir", str(tmp_path), "--user", "u"]) == 2
    assert "--user: for csv and parquet only" in capsys.readouterr().err
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (semrec[tables])")
    assert main(["parquet", str(tmp_path / "bad.parquet"), "--name", "p", "--out-dir", str(tmp_path),
                 "--user", "u", "--item", "i"]) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err


def test_a_missing_extra_is_named(tmp_path, capsys, monkeypatch):
    from semrec.common.extras import MissingExtra, require

    monkeypatch.setitem(__import__("sys").modules, "torch_geometric.nn", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r'the GAT layers needs torch_geometric .*pip install "semrec\[graph\]"'):
        require("torch_geometric.nn", "graph", "the GAT layers")
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    assert main(["parquet", str(tmp_path / "x.parquet"), "--name", "p", "--out-dir", str(tmp_path),
                 "--user", "u", "--item", "i"]) == 2
    assert 'reading Parquet needs pyarrow' in capsys.readouterr().err
