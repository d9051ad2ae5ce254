"""A tiny name -> object registry, the suite's one extension mechanism (as timm's ``@register_model``).

Methods, datasets and partition schemes are registered by lowercase name; an unknown name raises
:class:`~benchmark.errors.UnknownNameError` listing the valid ones, so there are no string if-chains.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from benchmark.errors import NameClashError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to objects (classes or factories).

    Args:
        kind: What is registered, used in error messages ("method", "dataset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` (must be lowercase and unique)."""
        if name != name.lower():
            raise ValueError(f"{self.kind} names are lowercase, got {name!r}")

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise NameClashError(f"{self.kind} {name!r} is registered twice ({_where(self._items[name])} and "
                                     f"{_where(obj)}); rename one")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; raise with the valid names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
