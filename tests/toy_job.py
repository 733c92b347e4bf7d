"""A toy training job for the loop's tests: a two-layer MLP on random regression data.

Run as a script it is one process of a multi-process run of that job (tests/test_multihost.py):

  python tests/toy_job.py WORKDIR NUM_STEPS COORDINATOR NUM_PROCESSES PROCESS_ID
"""

import dataclasses
import sys

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtalk.training.settings import TrainSettings

RULES = (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"))
MESH_8 = {"data": 2, "fsdp": 2, "tensor": 2}
BATCH, IN_DIM, OUT_DIM = 8, 8, 4
EMA_DECAY = 0.9


class ToyMLP(nn.Module):
  hidden: int = 16

  @nn.compact
  def __call__(self, x):
    def logical(init, names):
      return nn.with_logical_partitioning(init, names)

    x = nn.Dense(
      self.hidden,
      kernel_init=logical(nn.initializers.lecun_normal(), ("embed", "mlp")),
      bias_init=logical(nn.initializers.zeros, ("mlp",)),
    )(x)
    x = nn.LayerNorm(
      scale_init=logical(nn.initializers.ones, ("mlp",)),
      bias_init=logical(nn.initializers.zeros, ("mlp",)),
    )(x)
    x = nn.gelu(x)
    return nn.Dense(
      OUT_DIM,
      kernel_init=logical(nn.initializers.lecun_normal(), ("mlp", "embed")),
      bias_init=logical(nn.initializers.zeros, ("embed",)),
    )(x)


def toy_init_fn(hidden=16):
  model = ToyMLP(hidden)
  return lambda rng: model.init(rng, jnp.zeros((1, IN_DIM)))["params"]


def toy_loss(params, batch, rng):
  # Input noise makes the loss depend on the step's RNG, so RNG handling is tested too.
  x = batch["x"] + 0.1 * jax.random.normal(rng, batch["x"].shape)
  # A no-op outside a mesh context; inside train() it constrains by the rules, as model code may.
  x = nn.with_logical_constraint(x, ("batch", None))
  mse = jnp.mean((ToyMLP().apply({"params": params}, x) - batch["y"]) ** 2)
  return mse, {"mse": mse}


SETTINGS = TrainSettings(
  batch_size=BATCH,
  num_steps=6,  # the length of the runs below, which the learning-rate schedule decays over
  learning_rate=1e-2,
  warmup_steps=2,
  end_learning_rate_factor=0.1,
  weight_decay=0.01,
  adam_b1=0.9,
  adam_b2=0.999,
  grad_clip=1.0,
  ema_decay=EMA_DECAY,
  log_every=1,
  checkpoint_every=4,
)


NOTHING_FROZEN = lambda path: False


def toy_dataset(host_index: int = 0, hosts: int = 1):
  """Batches of BATCH examples forever; with several hosts, this host's rows of each."""
  rng = np.random.default_rng(0)
  examples = [
    {
      "x": rng.normal(size=IN_DIM).astype(np.float32),
      "y": rng.normal(size=OUT_DIM).astype(np.float32),
    }
    for _ in range(40)
  ]
  rows = slice(host_index * BATCH // hosts, (host_index + 1) * BATCH // hosts)
  batches = grain.MapDataset.source(examples).shuffle(seed=1).repeat().batch(BATCH)
  return batches.map(lambda batch: {key: value[rows] for key, value in batch.items()})


CONFIG_DICT = {"model": {"hidden": 16}, "mesh": MESH_8, "axis_rules": RULES, "seed": 0}


class ToyJob:
  """What the loop trains: the toy MLP, with the six-step settings of these tests."""

  def __init__(self, num_steps):
    self.config = ml_collections.ConfigDict(CONFIG_DICT)
    self.settings = dataclasses.replace(SETTINGS, num_steps=num_steps)
    self.init = toy_init_fn()
    self.loss = toy_loss

  is_frozen = staticmethod(NOTHING_FROZEN)


def main(workdir, num_steps, coordinator, num_processes, process_id):
  from jaxtalk.cli import run_command
  from jaxtalk.parallel.distributed import ProcessSpec, join_run
  from jaxtalk.training.loop import train

  def command(_):
    join_run(ProcessSpec(coordinator, int(num_processes), int(process_id)))
    dataset = toy_dataset(jax.process_index(), jax.process_count())
    job = ToyJob(int(num_steps))
    # Saved at the end, or where a preemption stops it: what the test resumes from.
    job.settings = dataclasses.replace(job.settings, checkpoint_every=int(num_steps))
    train(job, dataset, workdir)

  return run_command(command, None)


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:]))
