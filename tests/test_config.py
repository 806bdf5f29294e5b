"""Config layering: defaults < model YAML < dataset section < --set; typed and checked."""
import pytest

from semrec.encoder.config import ConfigError, resolve_config
from semrec.encoder.models import LightGCN

YAML = """
train: {lr: 0.01, epochs: 50}
model: {layers: 4, reg_weight: 1.0e-5}
datasets:
  toy:
    train: {epochs: 7}
    model: {layers: 1}
"""


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "lightgcn.yaml"
    path.write_text(YAML)
    return path


def test_precedence(cfg_file):
    cfg = resolve_config("lightgcn", "other", LightGCN, [], cfg_file)
    assert (cfg.train.lr, cfg.train.epochs, cfg.model["layers"]) == (0.01, 50, 4)
    assert cfg.train.batch_size == 4096  # dataclass default
    assert cfg.model["keep_rate"] == 0.8  # constructor default
    cfg = resolve_config("lightgcn", "toy", LightGCN, [], cfg_file)
    assert (cfg.train.lr, cfg.train.epochs, cfg.model["layers"]) == (0.01, 7, 1)
    cfg = resolve_config("lightgcn", "toy", LightGCN, ["train.epochs=3", "model.layers=2",
                                                       "model.reg_weight=1e-4", "eval.ks=[1,2]"], cfg_file)
    assert (cfg.train.epochs, cfg.model["layers"], cfg.model["reg_weight"], cfg.eval.ks) == (3, 2, 1e-4, [1, 2])


def test_shipped_rlmrec_defaults():
    yelp = resolve_config("lightgcn", "yelp", LightGCN)
    steam = resolve_config("lightgcn", "steam", LightGCN)
    assert (yelp.model["layers"], steam.model["layers"], yelp.model["reg_weight"]) == (3, 2, 1e-6)
    assert (yelp.train.batch_size, yelp.train.lr, yelp.train.test_step, yelp.train.patience) == (4096, 1e-3, 3, 5)


@pytest.mark.parametrize("name, changed", [("gccf_plus", {}), ("sgl_gene", {}),
                                           ("gccf_gene", {"mask_ratio": 0.02})])
def test_yelp_text_takes_rlmrec_yelp_settings(name, changed):
    """data/yelp_text reads RLMRec's Yelp values, except the settings chosen on it."""
    from semrec.encoder.registry import get_model_class

    cls = get_model_class(name)
    yelp, text = resolve_config(name, "yelp", cls), resolve_config(name, "yelp_text", cls)
    assert (text.model, text.align) == (yelp.model, {**yelp.align, **changed})
    assert all(yelp.align[key] != value for key, value in changed.items())
    other = resolve_config(name, "elsewhere", cls)
    assert (text.model, text.align) != (other.model, other.align)  # the Yelp section is not the default


def test_sgl_on_yelp_text_shares_its_backbone_settings_with_the_aligned_models():
    """The base SGL of the Yelp-text comparison has the backbone values of sgl_plus / sgl_gene."""
    from semrec.encoder.registry import get_model_class

    base = resolve_config("sgl", "yelp_text", get_model_class("sgl")).model
    for name in ("sgl_plus", "sgl_gene"):
        assert resolve_config(name, "yelp_text", get_model_class(name)).model == base
    assert base != resolve_config("sgl", "yelp", get_model_class("sgl")).model  # not RLMRec's SGL Yelp values


@pytest.mark.parametrize("override, message", [
    (["train.lrr=1"], "valid keys in 'train': epochs, batch_size, lr"),
    (["optim.lr=1"], "unknown section 'optim'; valid sections: train, eval, model"),
    (["model.layer=2"], "valid keys: dim, layers, keep_rate, reg_weight, layer_agg"),
    (["train.epochs=2.5"], "expected an integer"),
    (["eval.groups=maybe"], "expected true/false"),
    (["eval.exclude=seen"], "not a valid choice; valid values: train, history, none"),
    (["lr"], "expected SECTION.KEY=VALUE"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("lightgcn", "yelp", LightGCN, override)


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("model: {layerz: 3}\n")
    with pytest.raises(ConfigError, match=f"{path}: model.layerz is not a hyperparameter"):
        resolve_config("lightgcn", "yelp", LightGCN, [], path)
    path.write_text("datasets:\n  yelp:\n    trian: {lr: 1}\n")
    with pytest.raises(ConfigError, match=r"\[datasets.yelp\]: unknown section 'trian'"):
        resolve_config("lightgcn", "yelp", LightGCN, [], path)
