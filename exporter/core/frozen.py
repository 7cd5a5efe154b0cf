"""A quicker `__init__` for the frozen, slotted dataclasses built once per run.

The `__init__` that `dataclass` writes for a frozen class sets each field with
`object.__setattr__(self, name, value)`: a name lookup and a generic call per field. A `Run` has
over twenty fields, and building one that way costs about as much as all the checks a run goes
through. The `__init__` written here sets each slot through its own descriptor, bound once,
which is the same assignment at half the cost. Everything else stays `dataclass`'s: the
signature and defaults, equality, hashing, `dataclasses.replace`, and the instance is as frozen
(assigning to a field still raises `FrozenInstanceError`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def quick_init(cls: type[T]) -> type[T]:
    """Gives a frozen, slotted dataclass (with plain defaults only, no `__post_init__`) an
    `__init__` that sets its slots directly. Applied above `@dataclass`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which this __init__ would skip")
    namespace: dict[str, Any] = {}
    arguments, body = ["self"], []
    keyword_only = False
    for field in dataclasses.fields(cls):
        if not field.init or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: only plain fields and defaults")
        if field.kw_only and not keyword_only:
            arguments.append("*")
            keyword_only = True
        argument = field.name
        if field.default is not dataclasses.MISSING:
            namespace[f"_default_{field.name}"] = field.default
            argument += f"=_default_{field.name}"
        arguments.append(argument)
        namespace[f"_set_{field.name}"] = cls.__dict__[field.name].__set__
        body.append(f"    _set_{field.name}(self, {field.name})")
    source = f"def __init__({', '.join(arguments)}) -> None:\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # noqa: S102 - code written here from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses assigning a method directly
    return cls
