"""Thin HTTP controllers: one module per capability, plus health, callbacks, jobs, events, ops."""
