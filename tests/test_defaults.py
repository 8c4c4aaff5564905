"""handfit.defaults: the settings dataclasses take their defaults from configs/default.py."""

import dataclasses

import pytest

from configs import default
from handfit import augment, defaults, losses, objective, refine
from handfit.detect import DetectConfig
from handfit.models import dhpe


def test_every_library_default_is_the_default_configs():
    config = default.get_config()
    for field in dataclasses.fields(refine.RefineConfig):
        assert field.default == config.refine[field.name], field.name
    for field in dataclasses.fields(augment.AugmentConfig):
        section = config.augment if field.name in config.augment else config.data
        assert field.default == section[field.name], field.name
    assert losses.DEFAULT_WEIGHTS == config.loss.weights.to_dict()
    assert losses.DEFAULT_TAU == config.loss.tau
    assert losses.CROP_SCALE == config.data.crop_scale
    assert refine.RefineConfig() == refine.RefineConfig.from_config(config.refine)
    assert augment.AugmentConfig() == augment.AugmentConfig.from_config(config.augment, config.data)
    assert DetectConfig() == DetectConfig.from_config(config.detect)
    assert objective.LossOptions() == objective.LossOptions.from_config(config)
    built, bare = dhpe.from_config(config), dhpe.DHPE()
    for field in dataclasses.fields(dhpe.DHPE):
        if field.name in config.model and field.name != "backbone":  # a name, not a class
            assert getattr(bare, field.name) == getattr(built, field.name), field.name
    assert (bare.crop_size, bare.render_budget) == (built.crop_size, built.render_budget)


def test_build_types_values_as_the_defaults_and_refuses_unknown_keys():
    section = default.get_config().refine.to_dict()  # plain values, as JSON would give them
    section.update(steps=7, learning_rate=2, group_lr=[1, 2, 3, 4, 5], freeze=["trans"])
    cfg = refine.RefineConfig.from_config(section)  # 'input', 'enabled', ... are the CLI's
    assert cfg.steps == 7 and cfg.freeze == ("trans",)
    assert type(cfg.learning_rate) is float and cfg.group_lr == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert all(type(v) is float for v in cfg.group_lr)
    hash(cfg)  # a static argument of jit
    with pytest.raises(ValueError, match=r"config.refine: unknown fields \['stpes'\]"):
        refine.RefineConfig.from_config({"stpes": 3})
    made = augment.AugmentConfig.from_config(
        {"enabled": True, "rotation_deg": [10, 20, 30]}, {"crop_scale": 2.0, "dir": "data"}
    )
    assert made.rotation_deg == (10.0, 20.0, 30.0) and made.crop_scale == 2.0
    assert made.per_seed == defaults.section("augment").per_seed  # not given: the default
    detect = DetectConfig.from_config({"enabled": False, "max_hands": 2, "min_score": 1})
    assert detect.max_hands == 2 and type(detect.min_score) is float  # 'enabled' is the CLI's
    assert detect.threads == defaults.section("detect").threads
    with pytest.raises(ValueError, match=r"config.detect: unknown fields \['max_handz'\]"):
        DetectConfig.from_config({"max_handz": 2})


def test_section_is_read_only_and_config_is_a_fresh_copy():
    with pytest.raises((AttributeError, TypeError)):
        defaults.section("refine").steps = 3
    first = defaults.config()
    first.refine.steps = 3
    assert defaults.config().refine.steps == default.get_config().refine.steps
