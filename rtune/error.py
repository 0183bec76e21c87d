"""Ray Tune's `TuneError`: what `tune.run(raise_on_failed_trial=True)` raises when trials failed."""


class TuneError(Exception):
    """Something in a tuning run went wrong that is not one trial's own error."""
