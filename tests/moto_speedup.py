"""moto 5.2's response serializer asks its alias providers, for every attribute of every response, which keys to
read from moto's model objects; that lookup was half the CPU time of the checker-harness tests. Its answer depends
only on the model class, the key and the botocore shape, so it is remembered per those (tests only; the pin in
requirements-dev.txt keeps moto's internals what this expects: `install()` fails loudly if they change)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from moto.core import serialize

_original = serialize.XFormedAttributePicker.get_possible_keys
_keys: dict[tuple[Any, ...], tuple[str, ...]] = {}


def _shape_key(shape: Any) -> tuple[Any, ...]:
    """What the alias providers read of a shape: its name, serialization name, and its parent's name and members."""
    if shape is None:
        return (None,)
    parent = getattr(shape, "parent", None)
    parent_key = (None,) if parent is None else (
        parent.name, parent.type_name, tuple(parent.members) if parent.type_name == "structure" else ())
    return (shape.name, shape.type_name, shape.serialization.get("name"), *parent_key)


def _remembered(picker: Any, context: Any) -> Iterator[str]:
    obj = context.obj
    aliases = getattr(getattr(obj, "Meta", None), "serialization_aliases", None)
    key = (type(picker), type(obj), context.key, _shape_key(context.shape),
           tuple(sorted(aliases.items())) if isinstance(aliases, dict) else None)
    found = _keys.get(key)
    if found is None:
        found = _keys[key] = tuple(_original(picker, context))
    return iter(found)


def install() -> None:
    assert callable(_original) and hasattr(serialize, "AttributePickerContext"), \
        "moto's serializer changed: update tests/moto_speedup.py or drop it"
    serialize.XFormedAttributePicker.get_possible_keys = _remembered  # type: ignore[method-assign,assignment]
