"""The item–attribute graph: attributes as data, the ``gat`` backbone, and attribute-aware items
in the sequential models."""
import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from helpers import TINY_ATTRIBUTES as ATTRS
from helpers import shared_path, write_attributes
from semrec.encoder.attributes import read_item_attributes
from semrec.common.io import DataError
from semrec.encoder.models.graph.base import GraphOutput

N_USERS, N_ITEMS = 30, 40


@pytest.fixture
def attr_dir(tiny_dir):
    assert (tiny_dir / "item_attributes.jsonl").exists()  # the tiny dataset carries ATTRS
    return tiny_dir


@pytest.fixture
def bare_dir(tiny_dir):
    (tiny_dir / "item_attributes.jsonl").unlink()
    return tiny_dir


def _train(folder, model, out, *sets):
    from semrec.encoder.train_encoder import main

    args = ["--model", model, "--dataset", "tiny", "--data-dir", str(folder), "--out", str(out), "--device", "cpu",
            "--quiet", "--set", "train.epochs=1"]
    for s in sets:
        args += ["--set", s]
    return main(args)


# ----- attributes as data ------------------------------------------------------------------------
def test_the_attribute_graph_of_a_hand_made_file(attr_dir):
    attrs = read_item_attributes(attr_dir / "item_attributes.jsonl", N_ITEMS)
    # nodes: brands b0 b1 b2 and categories c0 c1 c2 (a name is a node per relation)
    assert sorted(attrs.names) == ["brand:b0", "brand:b1", "brand:b2", "category:c0", "category:c1", "category:c2"]
    assert attrs.relations == ["brand", "category"]
    assert attrs.num_edges == 10 * 3 + 10
    per_item = attrs.per_item()
    assert per_item[:10].tolist() == [3] * 10 and per_item[10:20].tolist() == [1] * 10 and not per_item[20:].any()
    assert attrs.coverage()[[0, 10, 25]].tolist() == ["3+", "1-2", "0"]
    # item 4: brand b1 and categories c0, c1
    mine = {attrs.names[a] for a in attrs.edge_attribute[attrs.edge_item == 4]}
    assert mine == {"brand:b1", "category:c0", "category:c1"}
    # an attribute that fewer than 2 items hold goes; the others are renumbered consistently
    rows = ATTRS + [{"iid": 30, "attributes": {"brand": ["rare"]}}]
    pruned = read_item_attributes(write_attributes(attr_dir, rows) / "item_attributes.jsonl", N_ITEMS).prune(2)
    assert "brand:rare" not in pruned.names and pruned.num_edges == 40
    assert {pruned.names[a] for a in pruned.edge_attribute[pruned.edge_item == 4]} == mine


def test_the_gat_graph_has_typed_edges_both_ways_and_keeps_isolated_items(attr_dir):
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.models.graph.gat import GAT

    data = load_dataset(attr_dir)
    torch.manual_seed(0)
    model = GAT(data.train, data.attributes, dim=8, min_attribute_items=1).eval()  # no attention dropout
    view = model.attr_view
    fwd, rev = view.RELATIONS
    assert fwd == ("item", "has", "attribute") and rev == ("attribute", "describes", "item")
    assert view.edges.shape == (2, 40) and view.rel_emb.shape[0] == 2  # two relations, each edge typed
    assert set(view.edge_relation.tolist()) == {0, 1}
    assert view.attr_emb.shape[0] == 6
    users, items = model.encode()
    assert users.shape == (N_USERS, 8) and items.shape == (N_ITEMS, 8)  # every item ranked, isolated ones too
    attr = view(model.item_emb)
    assert torch.all(attr[20:] == 0) and torch.all(attr[:20].abs().sum(1) > 0)


def test_attribute_files_with_errors_name_the_line(tmp_path):
    f = tmp_path / "item_attributes.jsonl"
    f.write_text('{"iid": 0, "attributes": {"brand": ["a"]}}\n{"iid": 0, "attributes": {"brand": ["b"]}}\n')
    with pytest.raises(DataError, match=r"item_attributes.jsonl:2: item 0 is listed twice"):
        read_item_attributes(f, 5)
    f.write_text('{"iid": 1, "attributes": {"brand": "a"}}\n')
    with pytest.raises(DataError, match=r":1: expected"):
        read_item_attributes(f, 5)
    f.write_text('{"iid": 9, "attributes": {"brand": ["a"]}}\n')
    with pytest.raises(DataError, match="item_attributes.jsonl:1: item 9 is outside the dataset's items 0..4"):
        read_item_attributes(f, 5)


def test_prepare_writes_genres_and_knowledge_graph_facts_as_typed_attributes(tmp_path):
    from semrec.data.prepare import main

    raw = tmp_path / "raw"
    raw.mkdir()
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{i}\t5\t{u * 10 + i}" for u in range(1, 5) for i in range(1, 6)]
    (raw / "toy.inter").write_text("\n".join(inter) + "\n")
    (raw / "toy.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                  "1\tA\tComedy Drama\n2\tB\tComedy\n3\tC\tHorror\n4\tD\t\n5\tE\tDrama\n")
    (raw / "toy.link").write_text("item_id:token\tentity_id:token\n1\tm.a\n2\tm.b\n")
    (raw / "toy.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n"
                                "m.a\tfilm.film.directed_by\tm.x\nm.x\tfilm.director.film\tm.a\n"
                                "m.b\tfilm.film.directed_by\tm.x\nm.b\tfilm.film.actor\tm.y\n")
    assert main(["recbole", str(raw), "--name", "toy", "--out-dir", str(tmp_path)]) == 0
    rows = {r["iid"]: r["attributes"] for r in map(json.loads, (tmp_path / "toy" / "item_attributes.jsonl").open())}
    assert rows[0] == {"genre": ["Comedy", "Drama"], "kg_directed_by": ["m.x"]}  # the director's own triple: not an item's
    assert rows[1] == {"genre": ["Comedy"], "kg_directed_by": ["m.x"], "kg_actor": ["m.y"]}
    assert 3 not in rows  # item 4 has no genre and no facts: absent, and kept as an isolated item
    stats = json.loads((tmp_path / "toy" / "stats.json").read_text())["attributes"]
    assert stats["items_with_attributes"] == 4 and stats["per_relation"]["genre"] == 3
    # --attributes picks the fields; a wrong one lists the valid choices
    assert main(["recbole", str(raw), "--name", "toy2", "--out-dir", str(tmp_path), "--attributes", "class"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "toy2" / "item_attributes.jsonl").open()]
    assert all(set(r["attributes"]) == {"genre"} for r in rows)
    assert main(["recbole", str(raw), "--name", "toy3", "--out-dir", str(tmp_path), "--attributes", "colour"]) == 2
    # prepared again without attributes: the old file goes
    assert main(["recbole", str(raw), "--name", "toy2", "--out-dir", str(tmp_path), "--attributes", "none",
                 "--force"]) == 0
    assert not (tmp_path / "toy2" / "item_attributes.jsonl").exists()


def test_metadata_fields_become_attributes():
    from semrec.data.readers import item_attributes

    meta = {"brand": "OPI", "price": "$12.99", "categories": [["Beauty", "Makeup", "Nails"], ["Beauty", "Tools"]],
            "attributes": [5, 7], "title": "not an attribute"}
    assert item_attributes(meta) == {"attribute": ["5", "7"], "category": ["Beauty", "Makeup", "Nails", "Tools"],
                                     "brand": ["OPI"], "price": ["10-25"]}
    assert item_attributes({"price": 250.0, "categories": "Pizza, Bars"}) == {"category": ["Pizza", "Bars"],
                                                                               "price": ["100+"]}
    assert item_attributes({"price": "unknown"}) == {}


def test_real_s3rec_attributes_load_with_the_sequences():
    from semrec.encoder.dataset import load_dataset

    data = load_dataset(shared_path("s3rec", "Beauty.txt"))
    assert data.attributes.num_attributes == 637 and data.attributes.num_items == 12101
    assert (data.attributes.per_item() > 0).all()


# ----- the gat backbone ------------------------------------------------------------------------
def test_the_view_contrast_is_the_hand_computed_info_nce(attr_dir):
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.models.graph.gat import GAT

    data = load_dataset(attr_dir)
    model = GAT(data.train, data.attributes, dim=2, temperature=0.5, cl_negatives="batch", min_attribute_items=1)
    attr = torch.zeros(N_ITEMS, 2)
    inter = torch.zeros(N_ITEMS, 2)
    attr[1], inter[1] = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])   # cos 1 with itself
    attr[12], inter[12] = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])  # cos 1/√2 with itself
    out = GraphOutput(torch.zeros(N_USERS, 2), attr + inter, torch.zeros(1), {"attribute": attr, "interaction": inter})
    # items 1 and 12 have attributes, item 30 does not (left out); candidates: the interaction views of 1 and 12
    s = 1 / 2 ** 0.5
    loss1 = -1 / 0.5 + np.log(np.exp(1 / 0.5) + np.exp(s / 0.5))
    loss12 = -s / 0.5 + np.log(np.exp(s / 0.5) + np.exp(0 / 0.5))  # [0, 1] is orthogonal to item 1's [2, 0]
    got = model.view_contrast(out, torch.tensor([1, 12, 30]))
    assert got.item() == pytest.approx((loss1 + loss12) / 2, rel=1e-5)


def test_gradients_reach_the_attention_parameters(attr_dir):
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.models.graph.gat import GAT
    from semrec.encoder.batches import PairBatch

    data = load_dataset(attr_dir)
    torch.manual_seed(0)
    model = GAT(data.train, data.attributes, dim=8, min_attribute_items=1, interaction="gat", layers=2, cl_weight=0.1)
    u = torch.arange(N_USERS)
    batch = PairBatch(u, torch.tensor(data.train.indices[data.train.indptr[:-1]], dtype=torch.long),
                      data.sample_negatives(u))
    loss, terms = model.loss(batch)
    assert set(terms) == {"bpr", "reg", "cl"} and terms["cl"] > 0
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    attention = [n for n in grads if n.endswith(("att_src", "att_dst", "att_edge"))]
    assert any("attr_view" in n for n in attention) and any("ui_gat" in n for n in attention)
    for name in attention + ["attr_view.attr_emb", "attr_view.rel_emb"]:
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


@pytest.mark.parametrize("model", ["gat", "gat_plus", "gat_gene"])
def test_gat_models_train_one_epoch_from_the_cli(attr_dir, tmp_path, model):
    out = tmp_path / model
    assert _train(attr_dir, model, out, "model.dim=8", "model.min_attribute_items=1", "model.cl_weight=0.1") == 0
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["test"]["recall@20"] <= 1
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert "cl" in history[0] and np.isfinite(history[0]["loss"])


def test_gat_without_attributes_is_a_clear_error(bare_dir, tmp_path, capsys):
    assert _train(bare_dir, "gat", tmp_path / "run") == 2
    assert "gat needs item attributes: item_attributes.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ----- attribute-aware items in sequential models ------------------------------------------------
@pytest.mark.parametrize("model,fusion", [("sasrec", "gate"), ("gru4rec", "concat"), ("llmesr", "gate")])
def test_sequence_models_take_attribute_aware_items(attr_dir, tmp_path, model, fusion):
    out = tmp_path / model
    sets = ["model.dim=8", f"model.item_graph={fusion}"]
    if model == "llmesr":
        sets += ["model.neighbors=3", "model.heads=2"]
    assert _train(attr_dir, model, out, *sets) == 0
    assert 0 <= json.loads((out / "results.json").read_text())["test"]["ndcg@10"] <= 1


def test_the_fusion_reads_the_attribute_view(attr_dir):
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.models import SASRec

    data = load_dataset(attr_dir)
    torch.manual_seed(0)
    plain = SASRec(N_ITEMS, dim=8, max_len=6, dropout=0.0)
    torch.manual_seed(0)
    fused = SASRec(N_ITEMS, dim=8, max_len=6, dropout=0.0, item_graph="concat", attributes=data.attributes)
    fused.eval()
    table = fused.item_table()
    assert table.shape == (N_ITEMS, 8)
    # the table depends on the attribute embeddings for items with attributes, not for the others
    base = table.detach().clone()
    with torch.no_grad():
        fused.items.fusion.graph.attr_emb.add_(1.0)
    moved = (fused.item_table().detach() - base).abs().sum(1)
    assert torch.all(moved[:20] > 0) and torch.all(moved[20:] == 0)
    assert plain.items.item_graph == "none" and plain.items.fusion is None
    # the loss's gradient reaches the attribute view's attention
    h = torch.randint(0, N_ITEMS, (4, 6))
    loss = F.cross_entropy(fused.encode(h)[:, -1] @ fused.item_table().t(), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    att = [p.grad for n, p in fused.named_parameters() if n.endswith("att_src")]
    assert att and all(g is not None and g.abs().sum() > 0 for g in att)


def test_item_graph_without_attributes_is_exit_2(bare_dir, tmp_path, capsys):
    assert _train(bare_dir, "sasrec", tmp_path / "run", "model.item_graph=gate") == 2
    assert "model.item_graph=gate needs item attributes" in capsys.readouterr().err


def test_input_fusion_carries_attributes_to_users(attr_dir):
    """``attr_fusion=input``: an item's attributes reach the users who interacted with it (through
    the propagation); ``output``: user representations do not depend on attributes at all."""
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.models.graph.gat import GAT

    data = load_dataset(attr_dir)
    for fusion, moves in (("input", True), ("output", False)):
        torch.manual_seed(0)
        model = GAT(data.train, data.attributes, dim=8, min_attribute_items=1, attr_fusion=fusion).eval()
        users = model.encode()[0].detach().clone()
        with torch.no_grad():
            model.attr_view.attr_emb.add_(1.0)
        changed = (model.encode()[0] - users).abs().sum(1) > 1e-6
        assert bool(changed.any()) is moves, fusion
