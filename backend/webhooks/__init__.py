"""Webhooks: URLs a lead registers for a project's events, signed deliveries and their log."""
