"""The running half: the controller actor, the trial actors, the session trials report through."""
