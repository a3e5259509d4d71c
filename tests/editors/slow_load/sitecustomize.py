"""On PYTHONPATH of the server the first-seconds tests start: its model load takes INFILL_TEST_LOAD_DELAY_S
seconds more, as a large model from a slow disk would. (The shipped model is ready about half a second
after the server's imports, sooner than an editor's keys are typed, so the load would race the typing
that these tests need to happen while it loads.) Nothing in infill-ls reads this variable."""

import os

_delay = float(os.environ.get("INFILL_TEST_LOAD_DELAY_S") or 0)
if _delay > 0:
    import time

    import inference.loader as _loader

    _load_model = _loader.load_model

    def _slow_load_model(*args, **kwargs):
        time.sleep(_delay)
        return _load_model(*args, **kwargs)

    _loader.load_model = _slow_load_model
