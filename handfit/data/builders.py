"""TFDS builders over the dataset readers: array_record files, no TensorFlow.

One builder per dataset, registered under a ``handfit_`` name so it cannot clash
with a TFDS catalogue entry:

| builder | splits |
|---|---|
| ``handfit_rhd`` | ``training``, ``evaluation`` |
| ``handfit_stb`` | ``train`` (B2-B6), ``test`` (B1Counting + B1Random); BB left and right |
| ``handfit_dexter_object`` | ``test`` |
| ``handfit_freihand`` | ``training`` (all four image versions), ``evaluation`` |

Each builder reads the dataset from TFDS's manual directory (default
``<data_dir>/downloads/manual``; see ``MANUAL_DOWNLOAD_INSTRUCTIONS``), with the
readers' default options: RHD's mask rule with the wrist as joint 0, STB's palm
centre as joint 0, and no mirroring (``side`` says which hand it is; mirroring
is the input pipeline's job, :func:`handfit.data.example.mirror`).

Every split keeps the reader's order (``disable_shuffling``): record ``i`` of
``tfds.data_source(...)[split]`` is example ``i`` of the reader. Images are
stored as PNG (FreiHAND: its own JPEG bytes, not re-encoded); masks as PNG
``[H, W, 1]`` in {0, 1}. Read them back with :func:`data_source` (or
``tfds.data_source``); ``tfds.load`` needs TensorFlow and is not used.

Features (all builders): ``image`` uint8 ``[H, W, 3]``, ``K`` float32 ``[3, 3]``,
``joints3d`` float32 ``[21, 3]`` (metres, NaN = unlabelled), ``joints2d`` float32
``[21, 2]``, ``visible`` bool ``[21]``, ``side`` ClassLabel (``example.SIDES``: 0 left, 1 right),
``joint0`` text ('wrist' or 'palm'), ``sample_id`` text. RHD adds ``mask``;
FreiHAND adds ``mask`` and ``has_mask`` (False, mask all 0, on 'evaluation'),
``mano_pose`` [48], ``mano_shape`` [10], ``mano_uv_root`` [2], ``mano_scale`` [],
``vertices`` [V, 3].
"""

from __future__ import annotations

import dataclasses
import inspect
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from handfit import mano
from handfit.data import dexter_object, freihand, rhd, stb, synthetic
from handfit.data import example as ex


def _instructions(info: ex.DatasetInfo) -> str:
    return (
        f"Download {info.name} from {info.url} and unpack it into the manual directory "
        f"(default <data.dir>/downloads/manual; another with --config.data.manual_dir=DIR) "
        f"so that <manual_dir>/{info.folder}/ holds:\n{info.layout}"
    )


def _common_features(height: int, width: int, jpeg: bool = False) -> dict:
    return {
        "image": tfds.features.Image(
            shape=(height, width, 3), encoding_format="jpeg" if jpeg else "png"
        ),
        "K": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
        "joints3d": tfds.features.Tensor(shape=(21, 3), dtype=np.float32),
        "joints2d": tfds.features.Tensor(shape=(21, 2), dtype=np.float32),
        "visible": tfds.features.Tensor(shape=(21,), dtype=np.bool_),
        "side": tfds.features.ClassLabel(names=list(ex.SIDES)),
        "joint0": tfds.features.Text(),
        "sample_id": tfds.features.Text(),
    }


def _common_record(example: ex.Example, image) -> dict:
    return {
        "image": image,
        "K": example.K.astype(np.float32),
        "joints3d": example.joints3d.astype(np.float32),
        "joints2d": example.joints2d.astype(np.float32),
        "visible": example.visible.astype(bool),
        "side": example.side,
        "joint0": example.joint0,
        "sample_id": example.sample_id,
    }


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(mask.astype(np.uint8))


class _ReaderBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared parts: features from ``_features()``, records from ``_record()``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's own lookup touches `importlib_resources` (not installed) for builders
        # defined in a package; this file is where the builder's code lives.
        return epath.Path(inspect.getfile(cls))

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(self._features()),
            disable_shuffling=True,
        )

    def _features(self) -> dict:
        raise NotImplementedError

    def _record(self, example: ex.Example, reader) -> dict:
        return _common_record(example, Image.fromarray(example.image))

    def _generate_examples(self, reader):
        for index in range(len(reader)):
            yield index, self._record(reader[index], reader)


class HandfitRhd(_ReaderBuilder):
    """RHD (Rendered Hand Pose), one example per image: the hand chosen by hand3d's mask rule."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(rhd.INFO)

    def _features(self):
        return _common_features(*rhd.SIZE) | {
            "mask": tfds.features.Image(shape=(*rhd.SIZE, 1), encoding_format="png")
        }

    def _record(self, example, reader):
        return _common_record(example, Image.fromarray(example.image)) | {
            "mask": _mask_image(example.mask)
        }

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(rhd.RHD(dl_manager.manual_dir, split))
            for split in rhd.SPLITS
        }


class HandfitStb(_ReaderBuilder):
    """STB (Stereo Hand Pose Benchmark), Bumblebee2 left and right images; joint 0 the palm."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(stb.INFO)

    def _features(self):
        return _common_features(*stb.SIZE)

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(stb.STB(dl_manager.manual_dir, split))
            for split in stb.SPLITS
        }


class HandfitDexterObject(_ReaderBuilder):
    """Dexter+Object (test only): fingertips labelled, other joints NaN and not visible."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(dexter_object.INFO)

    def _features(self):
        return _common_features(*dexter_object.SIZE)

    def _split_generators(self, dl_manager):
        return {"test": self._generate_examples(dexter_object.DexterObject(dl_manager.manual_dir))}


class HandfitFreihand(_ReaderBuilder):
    """FreiHAND: right hands with MANO fits; training has four image versions per annotation."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(freihand.INFO)

    def _features(self):
        return _common_features(*freihand.SIZE, jpeg=True) | {
            "mask": tfds.features.Image(shape=(*freihand.SIZE, 1), encoding_format="png"),
            "has_mask": tfds.features.Tensor(shape=(), dtype=np.bool_),
            "mano_pose": tfds.features.Tensor(shape=(48,), dtype=np.float32),
            "mano_shape": tfds.features.Tensor(shape=(10,), dtype=np.float32),
            "mano_uv_root": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "mano_scale": tfds.features.Tensor(shape=(), dtype=np.float32),
            "vertices": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
        }

    def _record(self, example, reader):
        # The JPEG's own bytes: re-encoding would lose quality. The reader has decoded
        # and size-checked it already.
        with open(example.image_path, "rb") as f:
            record = _common_record(example, f.read())
        has_mask = example.mask is not None
        mask = example.mask if has_mask else np.zeros(freihand.SIZE, np.uint8)
        return record | {
            "mask": _mask_image(mask),
            "has_mask": has_mask,
            "mano_pose": example.mano_pose,
            "mano_shape": example.mano_shape,
            "mano_uv_root": example.mano_uv_root,
            "mano_scale": np.float32(example.mano_scale),
            "vertices": example.vertices,
        }

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(freihand.FreiHAND(dl_manager.manual_dir, split))
            for split in freihand.SPLITS
        }


@dataclasses.dataclass(eq=False)
class SyntheticBuilderConfig(tfds.core.BuilderConfig):
    """A synthetic dataset version: its name is derived from the spec."""

    spec: synthetic.SyntheticSpec = dataclasses.field(default_factory=synthetic.SyntheticSpec)


def synthetic_config(spec: synthetic.SyntheticSpec) -> SyntheticBuilderConfig:
    return SyntheticBuilderConfig(name=spec.name, description=str(spec), spec=spec)


class HandfitSynthetic(tfds.core.GeneratorBasedBuilder):
    """Hands rendered by handfit (``handfit.data.synthetic``); generated, nothing to download."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [synthetic_config(synthetic.SyntheticSpec())]
    GENERATE_CHUNK = 32  # hands rendered per call

    code_path = _ReaderBuilder.code_path

    @property
    def spec(self) -> synthetic.SyntheticSpec:
        return self.builder_config.spec

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.spec.image_size
        model = mano.get_model(self.spec.hand_model, "right")
        features = _common_features(size, size) | {
            "mask": tfds.features.Image(shape=(size, size, 1), encoding_format="png"),
            "mano_pose": tfds.features.Tensor(shape=(48,), dtype=np.float32),
            "mano_shape": tfds.features.Tensor(shape=(model.num_betas,), dtype=np.float32),
            "vertices": tfds.features.Tensor(shape=(model.num_vertices, 3), dtype=np.float32),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.__doc__} Hand model: {model.name}.",
            features=tfds.features.FeaturesDict(features),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in synthetic.SPLIT_SEEDS}

    def _generate_examples(self, split):
        model = mano.get_model(self.spec.hand_model, "right")
        total = self.spec.num(split)
        for start in range(0, total, self.GENERATE_CHUNK):
            count = min(self.GENERATE_CHUNK, total - start)
            for record in synthetic.generate(self.spec, split, start, count, model):
                yield (
                    record["sample_id"],
                    record
                    | {
                        "image": Image.fromarray(record["image"]),
                        "mask": _mask_image(record["mask"][..., 0]),
                        "side": ex.RIGHT,
                    },
                )


BUILDERS = {
    "rhd": HandfitRhd,
    "stb": HandfitStb,
    "dexter_object": HandfitDexterObject,
    "freihand": HandfitFreihand,
    "synthetic": HandfitSynthetic,
}
# The training and test splits of each dataset, as the papers use them.
TRAIN_SPLIT = {"rhd": "training", "stb": "train", "freihand": "training", "synthetic": "train"}
TEST_SPLIT = {
    "rhd": "evaluation",
    "stb": "test",
    "dexter_object": "test",
    "freihand": "evaluation",
    "synthetic": "test",
}


def builder(
    dataset: str, data_dir: str | os.PathLike, spec: synthetic.SyntheticSpec | None = None
) -> tfds.core.DatasetBuilder:
    """The TFDS builder of ``dataset`` (a key of :data:`BUILDERS`) under ``data_dir``.

    ``spec`` chooses the synthetic dataset's version (default: ``SyntheticSpec()``).
    """
    if dataset not in BUILDERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(BUILDERS)}")
    if dataset == "synthetic":
        config = synthetic_config(spec or synthetic.SyntheticSpec())
        return HandfitSynthetic(data_dir=os.fspath(data_dir), config=config)
    return BUILDERS[dataset](data_dir=os.fspath(data_dir))


def prepare(
    dataset: str,
    data_dir: str | os.PathLike,
    manual_dir: str | os.PathLike | None = None,
    spec: synthetic.SyntheticSpec | None = None,
):
    """Builds ``dataset``'s array_record files under ``data_dir`` (a no-op if already built).

    Args:
      dataset: a key of :data:`BUILDERS` ('rhd', 'stb', 'dexter_object', 'freihand',
        'synthetic').
      data_dir: TFDS data directory for the prepared files.
      manual_dir: where the downloaded dataset lies (the readers' ``data_dir``);
        default ``<data_dir>/downloads/manual``. Not used by 'synthetic'.
      spec: the synthetic dataset's spec (only for 'synthetic').
    Returns:
      The builder.
    Raises:
      DatasetNotFoundError naming the missing file when the download is incomplete.
    """
    prepared = builder(dataset, data_dir, spec)
    if manual_dir is None:
        manual_dir = os.path.join(os.fspath(data_dir), "downloads", "manual")
    if not prepared.is_prepared():
        # A partial download fails in the readers (built for every split before any example
        # is written), naming the missing file; an empty or absent manual_dir fails here.
        instructions = getattr(prepared, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
        if instructions and not (os.path.isdir(manual_dir) and os.listdir(manual_dir)):
            raise ex.DatasetNotFoundError(
                f"{dataset}: the manual directory {os.fspath(manual_dir)!r} is missing or empty "
                f"(set it with --config.data.manual_dir).\n{instructions}"
            )
        try:
            prepared.download_and_prepare(
                file_format="array_record",
                download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)),
            )
        except ex.DatasetNotFoundError as e:
            raise ex.DatasetNotFoundError(
                f"{dataset}: incomplete in the manual directory {os.fspath(manual_dir)!r} "
                f"(set it with --config.data.manual_dir). {e}"
            ) from e
    return prepared


def data_source(
    dataset: str,
    split: str,
    data_dir: str | os.PathLike,
    spec: synthetic.SyntheticSpec | None = None,
):
    """Random-access source over a prepared split (records as dicts of numpy arrays)."""
    prepared = builder(dataset, data_dir, spec)
    if not prepared.is_prepared():
        raise FileNotFoundError(
            f"dataset {dataset!r} is not prepared under {data_dir}; run "
            f"python main.py --mode=prepare --config=<your config> first"
        )
    return prepared.as_data_source(split=split)


def synthetic_spec(config) -> synthetic.SyntheticSpec:
    """The synthetic spec of a handfit config (``config.data.synthetic``, ``config.hand``)."""
    fields = dict(config.data.synthetic)
    for name in ("rotation_deg", "test_rotation_deg"):
        if fields.get(name) is not None:
            fields[name] = tuple(float(x) for x in fields[name])
    return synthetic.SyntheticSpec(**fields, hand_model=config.hand.model_path)


def prepare_config(config) -> dict[str, tfds.core.DatasetBuilder]:
    """Prepares every dataset a config trains or tests on; returns the builders by name.

    Every dataset is tried: when some are missing, the others are still prepared and one
    DatasetNotFoundError then names all the missing ones, each with where to get it.
    """
    data_dir = config.data.dir
    manual = config.data.manual_dir or None
    names = list(dict.fromkeys(list(config.data.train) + list(config.data.test)))
    spec = synthetic_spec(config)
    prepared, missing = {}, {}
    for name in names:
        b = builder(name, data_dir, spec)
        state = "already prepared" if b.is_prepared() else "preparing"
        print(f"{name}: {state} in {b.data_dir}")
        try:
            prepared[name] = prepare(name, data_dir, manual, spec)
        except ex.DatasetNotFoundError as e:
            missing[name] = e
    if missing:
        details = "\n\n".join(str(e) for e in missing.values())
        raise ex.DatasetNotFoundError(
            f"{len(missing)} of the config's datasets cannot be prepared ({', '.join(missing)}); "
            f"prepared: {', '.join(prepared) or 'none'}.\n\n{details}"
        )
    return prepared


def config_source(config, dataset: str, *, train: bool):
    """The prepared source of ``dataset``'s training (or test) split for a handfit config."""
    splits = TRAIN_SPLIT if train else TEST_SPLIT
    if dataset not in splits:
        kind = "training" if train else "test"
        raise ValueError(f"{dataset!r} has no {kind} split; {kind} sets: {sorted(splits)}")
    return data_source(dataset, splits[dataset], config.data.dir, synthetic_spec(config))


class _Concat:
    """Random access over several sources, one after the other."""

    def __init__(self, sources):
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int):
        i = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.sources[i][index - int(self.offsets[i])]


def training_source(config):
    """The training mix: the prepared training splits of ``config.data.train``, one after
    the other (the input pipeline shuffles them together)."""
    sources = [config_source(config, name, train=True) for name in config.data.train]
    return sources[0] if len(sources) == 1 else _Concat(sources)
