"""The attention benchmark script runs end to end on CPU (kernels interpreted) and writes results."""

import json

from jaxtalk.bench import attention as bench


def test_benchmark_writes_a_row_per_implementation(tmp_path):
  out = tmp_path / "results.json"
  assert (
    bench.main(
      [
        "--masks",
        "local_audio",
        "--lengths",
        "64",
        "--head-dims",
        "64",
        "--heads",
        "1",
        "--audio-radius",
        "4",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  results = json.loads(out.read_text())
  assert results["machine"]["jax"] and "interpret mode" in results["note"]
  assert {row["impl"] for row in results["rows"]} == {"reference_xla", "pallas_gpu", "pallas_tpu"}
  for row in results["rows"]:
    assert "error" not in row, row
    assert row["fwd_tflops"] > 0 and row["bwd_tflops"] > 0
