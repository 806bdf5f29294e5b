"""RLMRec's alignment modules, unchanged, on the sequence encoders (sasrec_plus, gsasrec_gene, ...)."""
import json
import pickle

import numpy as np
import pytest
import torch

from helpers import random_sequences, write_sequences
from semrec.encoder.align import GenerativeAlignment
from semrec.encoder.models import SASRec
from semrec.encoder.batches import SeqBatch

N_ITEMS, N_USERS = 40, 30


@pytest.fixture
def folder(tmp_path):
    f = tmp_path / "seq"
    write_sequences(f, random_sequences(num_users=N_USERS, num_items=N_ITEMS), N_ITEMS)
    rng = np.random.default_rng(3)
    for name, rows in (("itm_emb_np.pkl", N_ITEMS), ("usr_emb_np.pkl", N_USERS)):
        with open(f / name, "wb") as fh:
            pickle.dump(rng.standard_normal((rows, 24)).astype(np.float32), fh)
    return f


@pytest.mark.parametrize("model", ["sasrec_plus", "sasrec_gene", "gsasrec_gene", "gru4rec_plus", "bert4rec_gene"])
def test_aligned_sequence_models_train_from_the_cli(folder, tmp_path, model):
    from semrec.encoder.train_encoder import main

    out = tmp_path / "run"
    extra = ["--set", "model.negatives=5"] if model.startswith("gsasrec") else []
    assert main(["--model", model, "--dataset", "seq", "--data-dir", str(folder), "--out", str(out), "--device", "cpu",
                 "--quiet", "--set", "train.epochs=1", "--set", "model.dim=16", "--set", "model.max_len=8", *extra]) == 0
    history = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    term = "align" if model.endswith("_plus") else "recon"
    assert history[term] > 0  # the alignment term is part of the step
    assert 0 <= json.loads((out / "results.json").read_text())["test"]["ndcg@10"] <= 1


def _batch():
    inputs = torch.tensor([[N_ITEMS, 3, 7, 3], [5, 2, 9, 4]])
    targets = torch.tensor([[N_ITEMS, 7, 3, 11], [2, 9, 4, 6]])
    return SeqBatch(torch.tensor([0, 1]), inputs, targets, torch.full((2, 4, 0), N_ITEMS))


def test_an_item_output_is_the_mean_state_of_the_positions_that_read_it():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, dim=8, max_len=4, dropout=0.0).eval()
    batch = _batch()
    out = m.forward_train(m.input_embeddings(), batch)
    got = m.node_outputs(out, torch.tensor([3, 5]))
    assert torch.allclose(got[0], (out.states[0, 1] + out.states[0, 3]) / 2, atol=1e-6)  # item 3: read twice
    assert torch.allclose(got[1], out.states[1, 0], atol=1e-6)
    targets = m.align_targets(out, batch)
    assert [t.kind for t in targets] == ["user", "item"] and targets[0].per_row
    assert torch.equal(targets[0].reps, out.states[:, -1]) and targets[1].ids.tolist() == [7, 3, 11, 2, 9, 4, 6]


def test_generative_alignment_masks_only_items_the_batch_reads():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, dim=8, max_len=4, dropout=0.0)
    gen = GenerativeAlignment(np.ones((N_USERS, 6)), np.ones((N_ITEMS, 6)), 8, 8, node_kinds=("item",), mask_ratio=0.5)
    candidates = m.mask_candidates(_batch())
    assert candidates.tolist() == [2, 3, 4, 5, 7, 9]
    x0, seeds = gen.prepare(m.input_embeddings(), candidates)
    assert len(seeds) == 3 and set(seeds.tolist()) <= set(candidates.tolist())
    assert torch.equal(x0[seeds], gen.mask_token.expand(3, -1))
    untouched = torch.ones(N_ITEMS, dtype=torch.bool)
    untouched[seeds] = False
    assert torch.equal(x0[untouched], m.input_embeddings()[untouched])


def test_llmesr_is_not_offered_with_alignment():
    from semrec.encoder.registry import available_models, get_model_class

    assert "llmesr" in available_models() and "llmesr_plus" not in available_models()
    with pytest.raises(KeyError, match="valid models"):
        get_model_class("llmesr_plus")
