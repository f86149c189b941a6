"""Fails on purpose, with a message the session should carry."""

raise SystemExit("the input catalogue is empty")
