"""Jupyter widgets for choosing and understanding brokers (needs `stemlab[notebook]`).

`BrokerPlayground` drives one broker by hand (publish, consume, settle, dead
letters, an event log, and a `WorkersPanel` of the live workers with control
buttons); `ScenarioExplorer` re-simulates a scenario on every
broker profile as sliders move and overlays a live run on the prediction.
Both work in Jupyter and Voila (`stemlab lab` serves them), do their work on a
background thread, and stop it on `close()`.
"""

try:
    import ipywidgets  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "stemlab.widgets needs ipywidgets: pip install 'stemlab[notebook]'", name=exc.name
    ) from exc

from stemlab.widgets.explorer import ScenarioExplorer
from stemlab.widgets.playground import BrokerPlayground
from stemlab.widgets.workers import WorkersPanel

__all__ = ["BrokerPlayground", "ScenarioExplorer", "WorkersPanel"]
