"""The sequential family as parts (issue 35): item tables, encoders, batches and the config that
joins them by name, and the import arrows between the packages."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from semrec.encoder.models import GRU4Rec, SASRec
from semrec.encoder.models.sequential.encoders import build_encoder
from semrec.encoder.models.sequential.item_table import TEXT_ROWS, TextRows, register_item_text
from semrec.encoder.train_encoder import main

REPO = Path(__file__).resolve().parents[1]


class HashedText(TextRows):
    """A new item representation, written here: items whose text hashes alike share a learned row
    (a bucket per sign pattern of the text embedding's first three dimensions)."""

    def __init__(self, text: torch.Tensor, dim: int):
        super().__init__(text, dim)
        signs = (text[:, :3] > 0).long()
        self.register_buffer("bucket", signs[:, 0] * 4 + signs[:, 1] * 2 + signs[:, 2], persistent=False)
        self.rows = nn.Embedding(8, dim)

    def forward(self) -> torch.Tensor:
        return self.rows(self.bucket)


@pytest.fixture
def hashed():
    register_item_text("hashed")(HashedText)
    yield HashedText
    del TEXT_ROWS["hashed"]


@pytest.mark.parametrize("model", ["sasrec", "gru4rec", "bert4rec", "gsasrec"])
def test_a_new_item_representation_is_one_class(hashed, model, tiny_dir, tmp_path, capsys):
    extra = ["--set", "model.negatives=8"] if model == "gsasrec" else []
    out = tmp_path / "run"
    assert main(["--model", model, "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(out), "--device",
                 "cpu", "--set", "model.item_text=hashed", "--set", "train.epochs=1", "--quiet", *extra]) == 0
    assert "best epoch 0" in capsys.readouterr().out
    from semrec.encoder.train_encoder import load_run

    data, trainer = load_run(out)
    table = trainer.model.item_table().detach()
    bucket = trainer.model.items.text_rows.bucket
    for b in bucket.unique():  # items in one bucket have one row; the trained rows differ between buckets
        same = table[bucket == b]
        assert torch.equal(same, same[:1].expand_as(same))
    assert len({tuple(r.tolist()) for r in table}) == len(bucket.unique())


def test_an_unknown_item_table_option_names_the_valid_ones(tiny_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown item table option 'item_txt'; valid: item_text, text_shuffle, "
                                         "item_graph, graph_layers, graph_heads"):
        SASRec(40, item_txt="frozen")
    code = main(["--model", "gru4rec", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out",
                 str(tmp_path / "r"), "--set", "model.item_txt=frozen", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "model.item_txt is not a hyperparameter of gru4rec" in err and "item_text" in err
    code = main(["--model", "sasrec", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out",
                 str(tmp_path / "r"), "--set", "model.item_text=hashd", "--quiet"])
    assert code == 2 and "item_text must be one of none, pca, frozen, trainable, got 'hashd'" in capsys.readouterr().err


def test_an_unknown_encoder_option_names_the_valid_ones(tiny_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="sequence encoder 'gru4rec' takes no option 'heads'; its options: layers, "
                                         "dropout"):
        build_encoder("gru4rec", 8, 5, heads=2)
    with pytest.raises(ValueError, match="unknown sequence encoder 'lstm'; valid: bert4rec, gru4rec, sasrec"):
        build_encoder("lstm", 8, 5)
    code = main(["--model", "llmesr", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(tmp_path / "r"),
                 "--set", "model.dim=16", "--set", "model.encoder=gru4rec", "--set", "model.heads=4", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith("model.heads=4: the gru4rec encoder takes no heads; its options: layers, dropout")
    assert not (tmp_path / "r").exists()


def test_show_config_lists_every_constructor_argument_with_its_default(capsys):
    import inspect

    assert main(["--show-config", "sasrec"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln.split() for ln in out[1:]}
    skip = {"self", "num_items", "table"}
    for name, param in inspect.signature(SASRec.__init__).parameters.items():
        if name in skip:
            continue
        row = rows[f"model.{name}"]  # sasrec.yaml sets no model value outside its dataset sections
        shown = str(param.default).lower() if isinstance(param.default, bool) else f"{param.default:g}" \
            if isinstance(param.default, float) else str(param.default)
        assert row[1] == shown and "default" in row, (name, row)
    for name in ("item_text", "text_shuffle", "item_graph", "graph_layers", "graph_heads"):  # the table's settings
        assert f"model.{name}" in rows
    assert rows["model.ffn_dim"][1] == "256" and "feed-forward" in " ".join(rows["model.ffn_dim"])
    assert rows["train.batch_size"][1] == "256" and "sasrec.yaml" in rows["train.batch_size"]


def test_show_config_for_a_dataset_names_where_each_value_comes_from(capsys):
    assert main(["--show-config", "lightgcn_gene", "--dataset", "yelp"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("model.reg_weight"))
    assert "1e-07" in line and "lightgcn_gene.yaml [datasets.yelp]" in line
    line = next(ln for ln in out.splitlines() if ln.startswith("align.mask_ratio"))
    assert "0.05" in line and "float in (0, 1)" in line and "masked" in line


def test_a_batch_names_its_negatives_layout(tiny_data):
    """A model reads the layout from the batch: the same (B, 1, k) tensor is one set per sequence
    when the batch says so, and per position (broadcast) otherwise."""
    from semrec.encoder.batches import SeqBatch

    torch.manual_seed(0)
    m = GRU4Rec(40, dim=8, loss="bce", negatives=3, dropout=0.0)
    inputs = torch.tensor([[40, 3, 7, 2], [5, 2, 8, 1]])
    targets = torch.tensor([[40, 7, 2, 9], [2, 8, 1, 6]])
    negatives = torch.tensor([[[11, 20, 4]], [[14, 22, 25]]])
    per_position = negatives.expand(-1, 4, -1).clone()
    per_position[targets == 40] = 40
    users = torch.tensor([0, 1])
    told, _ = m.loss(SeqBatch(users, inputs, targets, negatives, "sequence"))
    spread, _ = m.loss(SeqBatch(users, inputs, targets, per_position, "position"))
    assert told.item() == pytest.approx(spread.item(), rel=1e-6)
    assert SeqBatch(users, inputs, targets, negatives, "sequence").per_sequence
    assert not SeqBatch(users, inputs[:, -1:], targets[:, -1:], negatives, "sequence").per_sequence  # one position


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("folder, forbidden", [
    ("encoder/models", ("semrec.encoder.sampling", "semrec.encoder.evaluator", "semrec.encoder.trainer")),
    ("encoder/models/sequential", ("semrec.encoder.models.graph",)),
    ("encoder", ("semrec.data",)),
])
def test_the_import_arrows_point_one_way(folder, forbidden):
    """Models import neither the samplers nor the evaluator (batch types live in encoder/batches.py),
    the sequential family nothing of the graph family (shared GAT layers: models/layers.py), and
    nothing in encoder/ imports data/. Checked on every import statement, at any depth."""
    for path in sorted((REPO / folder).rglob("*.py")):
        if folder == "encoder" and "api" in path.relative_to(REPO / "encoder").parts:
            continue  # encoder/api is the top-level `semrec` package (the folders are fixed): it joins data and encoder
        bad = {m for m in _imports(path) if m.startswith(forbidden)}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_config_does_not_import_the_models():
    assert not {m for m in _imports(REPO / "encoder" / "config.py") if m.startswith("semrec.encoder.models")}


def test_the_files_stay_readable():
    """``models/sequential/base.py`` at most 300 lines, no file in encoder/ over 400."""
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in (REPO / "encoder").rglob("*.py")}
    assert sizes["encoder/models/sequential/base.py"] <= 300
    assert not {p: n for p, n in sizes.items() if n > 400}


def test_the_reference_numbers_were_made_before_the_reshape():
    """The fixture test_reshape.py reads holds every model registered before the reshape, with its
    _plus and _gene variants; it was written at the commit before the reshape and never since."""
    from test_reshape import MODELS

    reference = json.loads((REPO / "tests" / "fixtures" / "reference_epochs.json").read_text())
    assert {n.split("_")[0] for n in reference if "+" not in n} == set(MODELS)
    assert len([n for n in reference if "+" not in n]) == 34
    assert all(len(epochs) == 3 and all("valid" in e and "loss" in e for e in epochs) for epochs in reference.values())
