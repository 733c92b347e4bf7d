"""How fast jaxtalk samples and trains on this machine: `python -m jaxtalk.bench`.

Compile time is always measured apart from run time: a jitted program compiles once per shape,
and what a user waits for on the second video is only the run time.
"""
