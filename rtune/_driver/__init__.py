"""The driver side of `fit()`, beside `rtune.tuner` (which keeps the API): `fit_loop` runs one fit
(takes the lease, starts the first trials and the controller, forwards stop signals, polls and
prints status, finishes into a ResultGrid); `first_trials`, `signals` and `progress` are its parts;
`user_objects` puts the run's final searcher, scheduler and stopper state back into the user's."""
