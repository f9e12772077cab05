"""Errors that name what is wrong, for one-line messages instead of tracebacks."""

from __future__ import annotations


class InputError(Exception):
    """The user's input is at fault (data files, metric name, options): the message is one line naming the problem."""


class NotConfiguredError(Exception):
    """A requested feature needs configuration that is absent (e.g. LLM codegen without a model endpoint)."""
