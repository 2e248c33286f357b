"""Exceptions that carry a message meant for a person: they name the thing and what is wrong."""

from __future__ import annotations


class SegpipeError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class ConfigError(SegpipeError):
    """A job config is invalid (unknown key, wrong type, missing file, unknown registry name)."""


class PathNotAllowed(ConfigError):
    """A path resolves outside every allowed root (or a name in the data is absolute / climbs with ``..``)."""


class DataError(SegpipeError):
    """A dataset is unreadable or violates the Sample contract; the message names file / image / annotation."""


class WeightsError(SegpipeError):
    """A weights file is missing, unsafe or does not match the model."""


class NotFoundError(SegpipeError):
    """A job, model version or artifact that was asked for does not exist; the message names it."""


class ServiceUnavailableError(SegpipeError):
    """A server segpipe needs (the database) does not answer; the message names it, password hidden."""
