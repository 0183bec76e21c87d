"""The driver side of fit() beside `rtune.tuner`: its first trials, signal forwarding, progress."""
