"""Turn pydantic validation errors into one-line Problems with file, line and field path."""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from truckctl.config.model import SecretRef
from truckctl.config.yamlfile import FieldPath
from truckctl.errors import Problem


def schema_problems(
    exc: ValidationError, model: type[BaseModel], locate: Any, prefix: FieldPath = ()
) -> list[Problem]:
    """`locate(field_path) -> str` gives the location text for a path inside the validated data."""
    problems = []
    for err in exc.errors(include_url=False):
        loc: FieldPath = tuple(p for p in err["loc"] if isinstance(p, int | str))
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(Problem("unknown-key", _unknown_key(model, loc), locate(prefix + loc)))
        elif kind == "missing":
            problems.append(Problem("missing-field", "required field is missing", locate(prefix + loc)))
        else:
            problems.append(Problem("invalid-value", _describe(err), locate(prefix + loc)))
    return _drop_typo_twins(problems)


def _drop_typo_twins(problems: list[Problem]) -> list[Problem]:
    """A misspelt key shows up twice (unknown 'alert', missing 'alerts'): keep only the unknown key."""
    suggested = {p.message.split("did you mean ")[1].rstrip("?") for p in problems
                 if p.code == "unknown-key" and "did you mean " in p.message}
    # Unknown keys first: they are usually the cause of the missing ones.
    problems = sorted(problems, key=lambda p: p.code != "unknown-key")
    return [p for p in problems
            if not (p.code == "missing-field" and repr(str(p.location).rsplit(".", 1)[-1].rsplit(" ", 1)[-1])
                    in suggested)]


def _describe(err: Any) -> str:
    msg = str(err["msg"])
    for noise in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(noise)
    msg = msg.replace("Input should be", "expected").replace("String should", "expected text to")
    msg = msg[:1].lower() + msg[1:]
    got = err.get("input")
    if isinstance(got, str | int | float | bool) and "got " not in msg:
        shown = repr(got)
        msg += f", got {shown[:60] + '...' if len(shown) > 60 else shown}"
    elif isinstance(got, dict | list) and "got " not in msg:
        msg += f", got a {'mapping' if isinstance(got, dict) else 'list'}"
    return msg


def _unknown_key(model: type[BaseModel], loc: FieldPath) -> str:
    key = str(loc[-1])
    shown = repr(key) if len(key) <= 60 else repr(key[:60]) + f"... ({len(key)} characters)"
    if _model_at(model, loc[:-1]) is SecretRef:
        return f"unknown key {shown}: secrets are never written in these files, expected env: VARIABLE_NAME"
    valid = _fields_at(model, loc[:-1])
    if not valid:
        return f"unknown key {shown}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5) if len(key) <= 200 else []
    if close:
        return f"unknown key {shown}, did you mean {close[0]!r}?"
    return f"unknown key {shown}, expected one of: {', '.join(sorted(valid))}"


def _fields_at(model: type[BaseModel], loc: FieldPath) -> list[str]:
    """The valid keys of the model found at `loc` (walking lists, dicts and optionals)."""
    found = _model_at(model, loc)
    return list(found.model_fields) if found is not None else []


def _model_at(model: type[BaseModel], loc: FieldPath) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) in (list, tuple):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] / X | None down to the interesting type."""
    if get_origin(tp) in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return options[0] if options else tp
    return tp
