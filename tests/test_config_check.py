"""Config checks: ranges named by field; a workdir's config.json guards resumes and evaluations."""

import json
import os

import pytest

from configs import ablation, default, full, synthetic, tiny
from handfit import config_check


@pytest.mark.parametrize(
    "config",
    [
        default.get_config(),
        full.get_config(),
        synthetic.get_config(),
        tiny.get_config(),
        ablation.get_config("narrow,augment,no_refiner"),
    ],
    ids=["default", "full", "synthetic", "tiny", "ablation"],
)
def test_every_shipped_config_is_valid(config):
    config_check.validate(config)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("train.checkpoint_every", 0, "an integer >= 1"),  # was a ZeroDivisionError at step 1
        ("train.steps", 0, "an integer >= 1"),
        ("train.batch_size", -4, "an integer >= 1"),
        ("train.log_every", 0, "an integer >= 1"),
        ("train.eval_every", -1, "an integer >= 0"),
        ("data.image_size", 0, "an integer >= 8"),
        ("data.heatmap_sigma", 0.0, "a finite number > 0"),
        ("data.synthetic.occluder_prob", 1.5, r"a number in \[0, 1\]"),
        ("model.sigma", 0.0, "a finite number > 0"),
        ("model.iterations", 0, "an integer >= 1"),
        ("model.rotation_form", "euler", "one of"),
        ("refine.sigma", -1.0, "a finite number > 0"),
        ("refine.steps", -1, "an integer >= 0"),
        ("refine.freeze", ("pose", "wrist"), "a tuple of"),
        ("loss.weights.shape", -1.0, "a finite number >= 0"),
        ("loss.weights.shape", float("nan"), "a finite number >= 0"),
        ("optim.learning_rate", 0.0, "a finite number > 0"),
        ("optim.step_boundaries", (0.9, 0.5), r"increasing fractions in \(0, 1\)"),
        ("optim.schedule", "linear", "one of"),
        ("eval.step", -2, "an integer >= -1"),
        ("seed", -1, "an integer >= 0"),
    ],
)
def test_a_field_out_of_range_is_named(field, value, expected):
    config = tiny.get_config()
    section, _, name = field.rpartition(".")
    node = config[section] if section else config  # ConfigDict reads dotted paths
    with config.unlocked():
        node[name] = value
    message = rf"^config\.{field}=.*; expected {expected}"
    with pytest.raises(config_check.ConfigError, match=message):
        config_check.validate(config)


def test_fields_that_must_agree_are_checked_together():
    config = tiny.get_config()
    config.model.render_size = 12  # the masks (32 px) are pooled to it
    with pytest.raises(config_check.ConfigError, match="render_size=12 does not divide.*=32"):
        config_check.validate(config)
    config = tiny.get_config()
    config.loss.weights["silhouette"] = 1.0
    with pytest.raises(config_check.ConfigError, match=r"unknown terms \['silhouette'\]"):
        config_check.validate(config)


def test_workdir_check_names_the_differing_model_fields(tmp_path):
    trained = tiny.get_config()
    config_check.record(trained, tmp_path, 0)
    config = tiny.get_config()
    config.model.cpm_width = 16
    config.model.iterations = 2  # same parameter shapes, another network
    config.optim.learning_rate = 1e-4  # not part of the model
    with pytest.raises(config_check.ConfigError) as info:
        config_check.check_workdir(config, tmp_path)
    message = str(info.value)
    assert "model.cpm_width 8 -> 16, model.iterations 1 -> 2." in message
    assert "--config.model.cpm_width=8 --config.model.iterations=1" in message
    assert "learning_rate" not in message
    # A resume keeps the optimiser state's structure: clipping on or off, not its value.
    config = tiny.get_config()
    config.optim.grad_clip = 0.5
    config_check.check_workdir(config, tmp_path, config_check.RESUME_FIELDS)
    config.optim.grad_clip = 0.0
    with pytest.raises(config_check.ConfigError, match="optim.grad_clip 1.0 -> 0.0"):
        config_check.check_workdir(config, tmp_path, config_check.RESUME_FIELDS)
    config_check.check_workdir(config, tmp_path / "fresh")  # no config.json: nothing to check


def test_a_model_field_added_later_reads_as_its_default_in_older_workdirs(tmp_path):
    """A workdir written before ``model.rotation_form`` existed trained f_M on quaternions
    (the default's): an evaluation with '6d' is refused by name (not a shape error at restore),
    and a comparison builds that workdir's model with quaternions."""
    old = tiny.get_config().to_dict()
    del old["model"]["rotation_form"]
    with open(config_check.config_path(tmp_path), "w") as f:
        json.dump(old, f)
    config = tiny.get_config()
    config.model.rotation_form = "6d"
    with pytest.raises(config_check.ConfigError, match="rotation_form 'quaternion' -> '6d'"):
        config_check.check_workdir(config, tmp_path)
    assert config_check.with_trained_model(config, tmp_path).model.rotation_form == "quaternion"
    config.model.rotation_form = "quaternion"
    config_check.check_workdir(config, tmp_path)


def test_record_keeps_the_config_that_trained_the_earlier_steps(tmp_path):
    first = tiny.get_config()
    assert config_check.record(first, tmp_path, 0) == {}
    second = tiny.get_config()
    second.optim.learning_rate = 1e-4
    second.train.steps = 8
    diff = config_check.record(second, tmp_path, 4)
    assert diff == {"optim.learning_rate": (1e-3, 1e-4), "train.steps": (4, 8)}
    with open(tmp_path / "config.until_step_4.json") as f:
        assert json.load(f)["optim"]["learning_rate"] == 1e-3
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["optim"]["learning_rate"] == 1e-4
    assert config_check.record(second, tmp_path, 6) == {}  # unchanged: nothing more kept
    assert sorted(os.listdir(tmp_path)) == ["config.json", "config.until_step_4.json"]


def test_a_damaged_config_json_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model": {"cpm_wi')
    with pytest.raises(config_check.ConfigError, match="config.json cannot be read"):
        config_check.check_workdir(tiny.get_config(), tmp_path)
