"""One small helper behind every registry of ray_slt: names mapped to ``"module:attribute"`` targets, imported
on first use.

Config kinds, corpus adapters, training stages and recipes, saved-model kinds (predictors), evaluation
protocols and VLM families are all :class:`Registry` objects. Entries are strings, so listing or validating
names never imports torch, Ray or a model library; :meth:`Registry.get` imports the target when it is needed.
An unknown name is a :class:`~ray_slt.errors.ConfigError` that lists the known ones and suggests the closest.

Because entries are import paths, a registration travels to other processes as a string: Ray workers that did
not run the ``register`` call themselves (a task registered from a test module or a user's package) receive
the target with their job (:meth:`Registry.target`) and :meth:`Registry.ensure` it before use.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from ray_slt.errors import ConfigError


class Registry:
    """``name -> "module:attribute"``; ``what`` names the kind of thing in error messages (e.g. "stage")."""

    def __init__(self, what: str, entries: Mapping[str, str] | None = None):
        self.what = what
        self._targets: dict[str, str] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: str | Any) -> None:
        """Add or replace ``name``; ``target`` is ``"module:attribute"`` or an object with ``__module__`` and
        ``__qualname__`` (a class or function defined at a module's top level)."""
        if not isinstance(target, str):
            target = f"{target.__module__}:{target.__qualname__}"
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise ConfigError(f"{self.what} {name!r}: target {target!r} is not of the form 'module:attribute'")
        self._targets[name] = target

    def ensure(self, name: str, target: str) -> None:
        """Register ``name`` as ``target`` unless it is registered already (a worker receiving a job's
        registration); a different existing target for the same name is an error."""
        known = self._targets.get(name)
        if known is None:
            self.register(name, target)
        elif known != target:
            raise ConfigError(f"{self.what} {name!r} is {known} here but {target} in the job that sent it")

    def target(self, name: str) -> str:
        self._check(name)
        return self._targets[name]

    def get(self, name: str) -> Any:
        """The registered object (imported on first use)."""
        module, _, attr = self.target(name).partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def names(self) -> list[str]:
        return sorted(self._targets)

    def _check(self, name: str) -> None:
        if name not in self._targets:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {self.what} {name!r}{hint}; known: {', '.join(self.names())}")

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._targets)
