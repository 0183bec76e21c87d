"""The driver's side of fit(): start the controller, forward signals, poll, print progress."""
