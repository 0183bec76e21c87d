"""The running half: the controller loop and the components it delegates to (see README, Engine)."""
