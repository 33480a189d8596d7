"""Project members: which annotators work on a project (default: all of them)."""
