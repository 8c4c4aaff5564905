"""Configs: every variant loads; ablation switches turn exactly their part off."""

import ast
import dataclasses
import pathlib

import pytest

from configs import ablation, default, full, synthetic, synthetic_long, tiny
from handfit.data import builders


@pytest.mark.parametrize("module", [default, full, synthetic, synthetic_long, tiny])
def test_each_config_starts_with_its_command(module):
    assert "python main.py --config=configs/" in module.__doc__
    module.get_config()


def test_ablation_switches_change_only_their_field():
    base = ablation.get_config("synthetic")
    assert base.to_dict() == synthetic.get_config().to_dict()
    expected = {
        "no_refine": ("refine", "enabled", False),
        "no_augment": ("augment", "enabled", False),
        "augment": ("augment", "enabled", True),
        "no_2d": ("loss", "use_2d_losses", False),
        "no_refiner": ("model", "use_refiner", False),
        "refiner": ("model", "use_refiner", True),
        "constant_shape": ("loss", "constant_shape_weight", True),
        "quaternion": ("model", "rotation_form", "quaternion"),
        "rotation_6d": ("model", "rotation_form", "6d"),
        "no_teacher": ("train", "teacher_joints2d", 0.0),
        "visible_2d": ("loss", "supervise_occluded", False),
        "feature": ("loss.weights", "feature", 1.0),
        "no_mask_head": ("model", "mask_head", False),
        "mask_head": ("model", "mask_head", True),
    }
    assert set(expected) == set(ablation.SWITCHES)
    for name, (section, field, value) in expected.items():
        config = ablation.get_config(f"synthetic,{name}")
        node, base_node = config, base
        for part in section.split("."):
            node, base_node = node[part], base_node[part]
        assert node[field] == value, name
        node[field] = base_node[field]
        assert config.to_dict() == base.to_dict(), name
    both = ablation.get_config("full, no_refiner, no_2d")
    assert not both.model.use_refiner and not both.loss.use_2d_losses
    assert both.data.train == ("rhd", "stb")
    with pytest.raises(ValueError, match="ablation switch 'no_such'"):
        ablation.get_config("synthetic,no_such")
    with pytest.raises(ValueError, match="ablation base 'mnist'"):
        ablation.get_config("mnist")


def test_narrow_trains_narrow_and_tests_wide():
    spec = builders.synthetic_spec(ablation.get_config("narrow"))
    train, test = spec.sampling("train"), spec.sampling("test")
    assert max(train.rotation_deg) < min(test.rotation_deg)
    assert train.shape_std < test.shape_std
    assert spec.name != builders.synthetic_spec(synthetic.get_config()).name


def test_the_long_run_tests_on_the_default_test_split():
    """Same test hands (spec fields other than num_train), so the two tables compare."""
    short = builders.synthetic_spec(synthetic.get_config())
    long = builders.synthetic_spec(synthetic_long.get_config())
    assert long.num_train > short.num_train
    same_but_size = dataclasses.replace(short.sampling("test"), num_train=long.num_train)
    assert long.sampling("test") == same_but_size


def test_configs_import_nothing_from_handfit():
    for path in sorted(pathlib.Path(default.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "handfit" for n in names), (path, names)
