"""Batch files of notebook runs, their planning, and the papermill runner."""
