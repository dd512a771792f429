"""Evaluating the Jinja2 of ansible_farm's task files: in a sandbox, and without guessing.

As Ansible does, a value that is one `{{ expression }}` keeps its native type (a list stays
a list) and any other text renders to text. The files are hostile input: templates run in
Jinja2's immutable sandbox with no globals, `*` may not build huge text or lists and `**` is
refused. What cannot be evaluated honestly here — filters that pick a value at run time
(`random`, `random_mac`), names only a playbook run defines, attribute access the sandbox
refuses — makes the value `Unknown`, carrying the reason; the caller warns with the value's
position and leaves it out. Ansible filters the seed's files use (`combine`, `ternary`,
`path_join`, `quote`) are reproduced.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox

MAX_TEXT = 65_536
"""Longest text or list a template may produce (the seed's longest value is ~100 chars)."""

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


@dataclass(frozen=True, eq=False)
class Unknown:
    """A value the import cannot evaluate; `reason` says why (never the value itself)."""

    reason: str


class NotEvaluatedError(Exception):
    """Raised inside a template to make its value Unknown."""


class _Env(jinja2.sandbox.ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise NotEvaluatedError("the '**' operator is not evaluated")
        for seq, count in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
            if sized and len(seq) * max(count, 0) > MAX_TEXT:
                raise NotEvaluatedError(f"'*' would build more than {MAX_TEXT} items")
        return super().call_binop(context, operator, left, right)


def _runtime(name: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise NotEvaluatedError(f"the {name!r} filter picks its value when the playbook runs")

    return refuse


def combine(*values: Any, recursive: bool = False, list_merge: str = "replace") -> Any:
    """Ansible's `combine`: later mappings win, recursively when asked."""
    if list_merge != "replace":
        raise NotEvaluatedError(f"combine(list_merge={list_merge!r}) is not evaluated")
    merged: dict[Any, Any] = {}
    for value in values:
        if not isinstance(value, Mapping):
            raise NotEvaluatedError("combine needs mappings")
        for key, item in value.items():
            mine = merged.get(key)
            if recursive and isinstance(mine, Mapping) and isinstance(item, Mapping):
                merged[key] = combine(mine, item, recursive=True)
            else:
                merged[key] = item
    return merged


def _ternary(value: Any, yes: Any, no: Any, none: Any = None) -> Any:
    if value is None and none is not None:
        return none
    return yes if value else no


def _path_join(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list | tuple) or not all(isinstance(p, str) for p in parts):
        raise NotEvaluatedError("path_join needs a list of texts")
    return posixpath.join(*parts) if parts else ""


def environment() -> jinja2.Environment:
    """The sandbox the task files are evaluated in."""
    env = _Env(undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals.clear()
    env.filters.update(
        random=_runtime("random"),
        random_mac=_runtime("random_mac"),
        shuffle=_runtime("shuffle"),
        combine=combine,
        ternary=_ternary,
        path_join=_path_join,
        quote=lambda text: shlex.quote(str(text)),
    )
    return env


def names(env: jinja2.Environment, text: str) -> set[str] | Unknown:
    """The variables `text` reads (Unknown on a syntax error)."""
    try:
        return set(jinja2.meta.find_undeclared_variables(env.parse(text)))
    except jinja2.TemplateSyntaxError as error:
        return Unknown(f"template syntax error: {error.message}")


def evaluate(env: jinja2.Environment, text: str, variables: Mapping[str, Any]) -> Any:
    """`text` rendered with `variables` (each already evaluated): a native value for a single
    `{{ expression }}`, text otherwise, or Unknown saying why it cannot be evaluated."""
    for value in variables.values():
        if isinstance(value, Unknown):
            return value  # the reason was reported where that value is defined
    single = _SINGLE.match(text)
    try:
        if single and "{{" not in single["expr"] and "}}" not in single["expr"]:
            result = env.compile_expression(single["expr"], undefined_to_none=False)(**variables)
            if isinstance(result, jinja2.Undefined):
                str(result)  # raises: StrictUndefined says which name
        else:
            result = env.from_string(text).render(**variables)
    except NotEvaluatedError as error:
        return Unknown(str(error))
    except jinja2.TemplateSyntaxError as error:
        return Unknown(f"template syntax error: {error.message}")
    except jinja2.TemplateError as error:
        return Unknown(f"template: {error.message or type(error).__name__}")
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as error:
        return Unknown(f"template: {type(error).__name__}")
    if isinstance(result, str | list | tuple) and len(result) > MAX_TEXT:
        return Unknown(f"the value is longer than {MAX_TEXT}")
    return result
