"""The live interpreter: the model played on a real broker in wall time (`run_live`).

`run_live` owns the producer and the clock; `stemlab.live.worker` holds the
task-slot threads. `stemlab.live.bench` (the `stemlab bench` benchmark) and
`stemlab.live.overhead` (the cost of instrumentation) measure live brokers too.
"""

from stemlab.live.run import default_deadline, run_live

__all__ = ["default_deadline", "run_live"]
