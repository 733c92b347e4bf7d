"""The two training stages: what each trains, on which batches, with which loss.

`STAGES` is the one registry, in the order a full run trains them; `train.py`, the bundle export
and the benchmark all look stages up here. The loop itself (sharding, checkpoints, resume,
logging) is stage-agnostic: `jaxtalk.training.loop`.
"""

from jaxtalk.stages.motion_stage import MotionStage
from jaxtalk.stages.renderer_stage import RendererStage

STAGES = {stage.name: stage for stage in (RendererStage, MotionStage)}
