"""Ingest as an Apache Beam pipeline: the local path's per-video work, spread over Beam's workers.

  python -m jaxtalk.data.ingest --videos DIR --out DIR --runner DirectRunner [BEAM OPTIONS]

Each video is one element; `ingest_video` stages its clips exactly as a local worker does, and a
last step, once all are staged, assembles the shards in sorted video order: the same shards, byte
for byte, as `--workers`. Every worker must see the video folder and the output folder under the
same paths (one machine, or a shared file system mounted alike). Beam is an optional dependency,
imported only here.
"""

from collections.abc import Sequence

from jaxtalk.data import ingest_staging
from jaxtalk.data.ingest_video import IngestSettings, ingest_video
from jaxtalk.errors import UserError


def run_pipeline(
  pending: list[str],
  names: list[str],
  out_dir: str,
  settings: IngestSettings,
  runner: str,
  pipeline_args: Sequence[str],
) -> list[dict]:
  """Ingests the `pending` video paths and assembles all of `names`; returns their reports."""
  try:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
  except ImportError as e:
    raise UserError(
      f"--runner {runner} needs Apache Beam ({e}); install it with pip install 'jaxtalk[beam]'"
    ) from e
  staging = ingest_staging.staging_dir(out_dir, settings.split)
  options = PipelineOptions([f"--runner={runner}", *pipeline_args])
  with beam.Pipeline(options=options) as pipeline:
    _ = (
      pipeline
      | "videos" >> beam.Create(pending)
      # One video per bundle, so that the runner can spread them over its workers.
      | "spread" >> beam.Reshuffle()
      | "ingest" >> beam.Map(ingest_video, staging, settings)
      # A barrier: the list is complete only once every video is staged.
      | "all staged" >> beam.combiners.ToList()
      | "assemble" >> beam.Map(lambda _: ingest_staging.assemble(names, out_dir, settings))
    )
  return ingest_staging.read_report(out_dir, settings.split)
