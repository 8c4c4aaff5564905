"""The paper's ablations (its Fig. 5) and the augmentation study, as variants of a base config.

    python main.py --mode=train --workdir=runs/ablation/all \
        --config=configs/ablation.py:synthetic,quaternion,no_teacher,visible_2d,feature,no_mask_head
    python main.py --config=configs/ablation.py:synthetic,no_refiner --mode=train \
        --workdir=runs/ablation/no_refiner
    python main.py --config=configs/ablation.py:synthetic --mode=eval --workdir=runs/ablation \
        --config.eval.workdirs="('runs/ablation/all','runs/ablation/no_refiner')"

The argument is ``BASE[,SWITCH...]``. BASE: ``full`` (configs/full.py, the paper),
``synthetic`` (configs/synthetic.py) or ``narrow`` (synthetic, trained on narrow
viewpoints and shapes and tested on wide ones: what Sec. 3.5's augmentation is for).
SWITCH, each turning one part of the method off (or on):

* ``no_refine``: no test-time refinement (Eq. 13) in --mode=eval;
* ``no_augment`` / ``augment``: without / with the self-supervised augmentation (Sec. 3.5);
* ``no_2d``: without the 2D losses (Eqs. 2 and 3);
* ``no_refiner`` / ``refiner``: without / with the 2D pose refiner f_R (Eq. 6; both
  bases have it);
* ``constant_shape``: a constant shape weight instead of Eq. 12's hierarchical one;
* ``quaternion`` / ``rotation_6d``: f_M regresses the paper's quaternion / the continuous
  6D rotation (the synthetic base regresses the 6D form, ``full`` the quaternion);
* ``no_teacher``: f_M always starts from the CPM's joints (no teacher forcing;
  ``train.teacher_joints2d``, on in the synthetic base);
* ``visible_2d``: the 2D terms on the visible joints only, as the paper
  (``loss.supervise_occluded``, on in the synthetic base);
* ``feature``: Eq. 2's feature loss at the paper's weight 1 (``loss.weights.feature``; off
  in the synthetic base, on in ``full``).
* ``no_mask_head`` / ``mask_head``: without / with the mask head f_S (not in the paper;
  ``model.mask_head``, on in the synthetic base): Eq. 13 then fits the start's own
  silhouette.

The paper's full method on the synthetic hands is
``synthetic,quaternion,no_teacher,visible_2d,feature,no_mask_head``.
"""

import ml_collections

from configs import full, synthetic


def _narrow() -> ml_collections.ConfigDict:
    config = synthetic.get_config()
    s = config.data.synthetic
    s.rotation_deg = (20.0, 20.0, 20.0)
    s.shape_std = 0.5
    s.test_rotation_deg = (50.0, 50.0, 50.0)
    s.test_shape_std = 1.5
    config.augment.rotation_deg = (30.0, 30.0, 30.0)
    config.augment.start_step = config.train.steps // 2  # seeds from a half-trained network
    return config


BASES = {"full": full.get_config, "synthetic": synthetic.get_config, "narrow": _narrow}


def _set(path: str, value):
    section, field = path.rsplit(".", 1)

    def switch(config):
        config[section][field] = value  # ConfigDict reads dotted paths

    return switch


SWITCHES = {
    "no_refine": _set("refine.enabled", False),
    "no_augment": _set("augment.enabled", False),
    "augment": _set("augment.enabled", True),
    "no_2d": _set("loss.use_2d_losses", False),
    "no_refiner": _set("model.use_refiner", False),
    "refiner": _set("model.use_refiner", True),
    "constant_shape": _set("loss.constant_shape_weight", True),
    "quaternion": _set("model.rotation_form", "quaternion"),
    "rotation_6d": _set("model.rotation_form", "6d"),
    "no_teacher": _set("train.teacher_joints2d", 0.0),
    "visible_2d": _set("loss.supervise_occluded", False),
    "feature": _set("loss.weights.feature", 1.0),
    "no_mask_head": _set("model.mask_head", False),
    "mask_head": _set("model.mask_head", True),
}


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
    base, *switches = [a.strip() for a in arg.split(",") if a.strip()]
    if base not in BASES:
        raise ValueError(f"ablation base {base!r}; expected one of {sorted(BASES)}")
    config = BASES[base]()
    for name in switches:
        if name not in SWITCHES:
            raise ValueError(f"ablation switch {name!r}; expected any of {sorted(SWITCHES)}")
        SWITCHES[name](config)
    return config
