"""Training with Sec. 3.5's generated examples: switched on at start_step, previewed, finite."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from configs import tiny
from handfit import train
from handfit.data import pipeline, synthetic


@pytest.fixture(scope="module")
def setup():
    config = tiny.get_config()
    config.augment.enabled = True
    config.augment.start_step = 1  # step 1 plain, step 2 augmented
    config.augment.per_seed = 1
    config.augment.preview_every = 2
    config.train.steps = 2
    config.train.eval_every = 0
    config.train.progress = False
    spec = synthetic.SyntheticSpec(num_train=8, image_size=32, occluder_prob=0.0)
    records = synthetic.generate(spec, "train", 0, 8)
    return config, records


def test_augmented_training_writes_a_preview_and_stays_finite(setup, tmp_path):
    config, records = setup
    state = train.train(config, str(tmp_path), records)
    assert int(state.step) == 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(np.isfinite(float(v)) for v in eval(lines[-1]).values())
    previews = sorted((tmp_path / "augment").glob("preview_*.png"))
    assert [p.name for p in previews] == ["preview_0000002.png"]  # not at the plain step 1
    grid = np.asarray(Image.open(previews[0]))
    size = config.data.image_size
    assert grid.shape == ((1 + config.augment.per_seed) * size, 4 * size, 3)
    # the generated row is not a copy of the seed row
    assert np.abs(grid[size:].astype(int) - grid[:size].astype(int)).mean() > 5


def test_augmented_step_trains_on_the_extended_batch(setup):
    config, records = setup
    mesh = train.data_mesh()
    plain, _ = train.compiled_steps(config, mesh)
    augmented = train.augmented_step(config, mesh)
    host = next(
        iter(pipeline.dataset(records, batch_size=4, train=False, **pipeline.options(config.data)))
    )
    batch = train._global_batch(host, NamedSharding(mesh, P("data")))
    state = train.create_state(config, mesh)
    _, m_plain = plain(jax.tree.map(lambda x: x.copy(), state), batch)
    _, m_aug = augmented(state, batch)
    m_plain, m_aug = jax.device_get((m_plain, m_aug))
    assert np.isfinite(m_aug["total"])
    # same state, same real examples: only the generated ones can change the loss
    assert not np.isclose(m_plain["total"], m_aug["total"], rtol=1e-4)
