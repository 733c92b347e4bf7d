"""The two training stages: what each trains, on which batches, with which loss.

The loop itself (sharding, checkpoints, resume, logging) is stage-agnostic: jaxtalk.training.loop.
"""

from jaxtalk.stages import motion_stage, renderer_stage

# Stage name -> train(config, workdir), in the order "all" runs them.
STAGE_TRAINERS = {"renderer": renderer_stage.train, "motion": motion_stage.train}
