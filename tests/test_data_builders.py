"""TFDS builders: prepared from the fixtures as array_record, read back with tfds.data_source."""

import fixtures_data as fx
import numpy as np
import pytest

from handfit.data import builders, dexter_object, freihand, rhd, stb
from handfit.data import example as ex

STB_SEQUENCES = tuple(f"B{b}{k}" for b in range(1, 7) for k in ("Counting", "Random"))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    manual = str(tmp_path_factory.mktemp("manual"))
    rng = np.random.default_rng(40)
    fx.write_rhd(manual, rng, "training", n=2)
    fx.write_rhd(manual, rng, "evaluation", n=2)
    fx.write_stb(manual, rng, sequences=STB_SEQUENCES, n=1)
    fx.write_dexter(manual, rng, sequences=dexter_object.SEQUENCES, n=1, missing=((2, 0, 4),))
    fx.write_freihand(manual, rng, n=2, split="training")
    fx.write_freihand(manual, rng, n=2, split="evaluation")
    return manual, str(tmp_path_factory.mktemp("tfds"))


def _same(record, example, extra=()):
    np.testing.assert_array_equal(record["image"], example.image)
    for field in ("K", "joints3d", "joints2d", "visible") + tuple(extra):
        np.testing.assert_array_equal(record[field], getattr(example, field), err_msg=field)
    assert record["side"] == (0 if example.side == "left" else 1)
    assert record["sample_id"].decode() == example.sample_id
    assert record["joint0"].decode() == example.joint0


@pytest.mark.parametrize(
    "name, make_readers",
    [
        ("rhd", lambda d: {s: rhd.RHD(d, s) for s in rhd.SPLITS}),
        ("stb", lambda d: {s: stb.STB(d, s) for s in stb.SPLITS}),
        ("dexter_object", lambda d: {"test": dexter_object.DexterObject(d)}),
        ("freihand", lambda d: {s: freihand.FreiHAND(d, s) for s in freihand.SPLITS}),
    ],
)
def test_builders_yield_the_readers_examples(dirs, name, make_readers):
    manual, data_dir = dirs
    builder = builders.prepare(name, data_dir, manual)
    assert builder.is_prepared()
    for split, reader in make_readers(manual).items():
        source = builders.data_source(name, split, data_dir)
        assert len(source) == len(reader) > 0
        for i in range(len(reader)):
            example, record = reader[i], source[i]
            if name == "freihand":
                _same(record, example, ("vertices", "mano_pose", "mano_shape", "mano_uv_root"))
                assert record["has_mask"] == (split == "training")
                if split == "training":
                    np.testing.assert_array_equal(record["mask"][..., 0], example.mask)
            else:
                _same(record, example)
            if name == "rhd":
                np.testing.assert_array_equal(record["mask"][..., 0], example.mask)
    builders.prepare(name, data_dir, manual)  # already prepared: a no-op


def test_incomplete_download_names_the_missing_file(tmp_path):
    manual = tmp_path / "manual"
    fx.write_rhd(str(manual), np.random.default_rng(41), "training", n=1)  # no evaluation split
    with pytest.raises(ex.DatasetNotFoundError, match="anno_evaluation.pickle"):
        builders.prepare("rhd", tmp_path / "tfds", manual)


def test_manual_instructions_name_the_source():
    assert "RenderedHandposeDataset" in builders.HandfitRhd.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "icip17_stereo_hand_pose_dataset" in builders.HandfitStb.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "dexter+object" in builders.HandfitDexterObject.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "FreihandDataset" in builders.HandfitFreihand.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert builders.HandfitRhd.name == "handfit_rhd"


def test_empty_manual_directory_says_where_to_get_the_data(tmp_path):
    (tmp_path / "manual").mkdir()
    with pytest.raises(ex.DatasetNotFoundError, match="manual_dir.*\n.*RenderedHandposeDataset"):
        builders.prepare("rhd", tmp_path / "tfds", tmp_path / "manual")
    with pytest.raises(ex.DatasetNotFoundError, match="is missing or empty"):
        builders.prepare("stb", tmp_path / "tfds", tmp_path / "absent")


def test_config_source_reads_the_configs_split(tmp_path):
    from configs import default

    config = default.get_config()
    config.data.dir = str(tmp_path)
    config.data.synthetic.num_train, config.data.synthetic.num_test = 2, 1
    config.data.synthetic.image_size = 32
    builders.prepare_config(config)
    assert len(builders.config_source(config, "synthetic", train=True)) == 2
    assert len(builders.config_source(config, "synthetic", train=False)) == 1
    with pytest.raises(ValueError, match="dexter_object.*no training split"):
        builders.config_source(config, "dexter_object", train=True)
    # The training mix: the sources of config.data.train one after the other.
    config.data.train = ("synthetic", "synthetic")
    mix = builders.training_source(config)
    one = builders.config_source(config, "synthetic", train=True)
    assert len(mix) == 4
    for i in range(4):
        assert mix[i]["sample_id"] == one[i % 2]["sample_id"]


def test_prepare_config_prepares_what_it_can_and_names_every_missing_dataset(tmp_path):
    from configs import default

    manual = tmp_path / "manual"
    for split in ("training", "evaluation"):
        fx.write_rhd(str(manual), np.random.default_rng(42), split, n=1)
    config = default.get_config()
    config.data.dir = str(tmp_path / "tfds")
    config.data.manual_dir = str(manual)
    config.data.train = ("stb", "rhd")
    config.data.test = ("dexter_object",)
    with pytest.raises(ex.DatasetNotFoundError) as info:
        builders.prepare_config(config)
    message = str(info.value)
    assert "2 of the config's datasets cannot be prepared (stb, dexter_object)" in message
    assert "prepared: rhd" in message and builders.builder("rhd", config.data.dir).is_prepared()
    assert "icip17_stereo_hand_pose_dataset" in message and "dexter+object" in message
    # The flag that sets the manual directory, not one that does not exist.
    assert "--config.data.manual_dir" in message
    assert " --manual_dir" not in builders.HandfitStb.MANUAL_DOWNLOAD_INSTRUCTIONS
