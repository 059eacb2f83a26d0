"""Event sources and consumers: what turns messages, schedules and events into invocations."""
