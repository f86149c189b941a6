"""Hosted platforms: ExecutionBroker services with a booking calendar, executors and UWS jobs."""
