"""Toolkits that ship with Conveyor. The core loads them by dotted path, never by name."""
