"""
A registry of classes by name: how congestion controllers and path schedulers are chosen from
configuration (``congestion=lia``, ``scheduler=wrr`` in an endpoint string).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import ConfigurationError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """
    Classes registered under names; each registered class gets its name as ``cls.name``.

    :param kind: what the classes are, for error messages ("congestion controller").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A class decorator registering the class under ``name``."""

        def decorate(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ConfigurationError(f"{self.kind} {name!r} is already registered")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Forget the class registered as ``name`` (for plug-ins and tests)."""
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: object) -> T:
        """
        The class registered as ``name`` (case-insensitive).

        :raises ConfigurationError: no class has that name; the message lists the known ones.
        """
        cls = self._classes.get(name.lower()) if isinstance(name, str) else None
        if cls is None:
            known = ", ".join(self.names())
            raise ConfigurationError(f"unknown {self.kind} {name!r}; known: {known}")
        return cls
