"""Typed config dataclasses: YAML files, command-line flags, early validation.

Every trainer has a ``*Config`` dataclass whose fields carry ``help`` metadata
(like TRL's configs). This module turns such a class into argparse flags,
reads a YAML file into it, and applies command-line overrides on top, so that
``gengym sft --config examples/configs/gp_l_sft.yaml --max-steps 10`` means
"the file, then the flag". Unknown YAML keys and wrong types are errors that
name the key and the file, raised before any model is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from gengym_core.run_safety import CommandError

C = TypeVar("C")


def names_local_folder(spec: str) -> bool:
    """Whether a model spec is meant as a local folder rather than a hub id.

    Hub ids are ``name`` or ``owner/name``; a spec starting with ``.``, ``/``
    or ``~``, or with more than one ``/``, can only be a path, so a missing
    folder can be reported as such instead of as a failed hub lookup.
    """
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1


def checkpoint_folder_problem(spec: str) -> str:
    """What keeps a model spec from naming a checkpoint, found without reading one, or ``""``.

    A file is never a checkpoint; a spec that can only be a local path (see
    :func:`names_local_folder`) must be a folder. Anything else may be a hub
    id and is left to the loader.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return f"no checkpoint folder at {spec!r}: it is a file; give the folder that holds config.json"
    if names_local_folder(spec) and not path.is_dir():
        return f"no checkpoint folder at {spec!r} (give the folder that holds config.json)"
    return ""


class ConfigError(ValueError, CommandError):
    """A config value is missing, unknown or invalid; the message says what to change.

    A :class:`~gengym_core.run_safety.CommandError`: a command that lets it through
    still ends with its message and exit status 2, never a traceback.
    """


def raise_config_errors(heading: str, errors: list[str], error: type[ValueError] = ConfigError) -> None:
    """Raise ``error`` listing every one of ``errors`` under ``heading``; nothing when there are none.

    One error makes one line (``heading: error``), several a list.

    Example:
        >>> raise_config_errors("invalid settings", ["a must be >= 0", "b must be set"])
        Traceback (most recent call last):
        ...
        trainers.common.config.ConfigError: invalid settings:
          - a must be >= 0
          - b must be set
    """
    if len(errors) == 1:
        raise error(f"{heading}: {errors[0]}")
    if errors:
        raise error(f"{heading}:\n  - " + "\n  - ".join(errors))


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert) a YAML/CLI value against a field type."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required (got null)")
    origin = typing.get_origin(inner)
    if origin is typing.Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {list(choices)}, got {value!r}")
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if inner is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if inner is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(inner)
        item_tp = args[0] if args else Any
        items = [
            v if item_tp is Any else _coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    if origin is dict or inner is dict:
        if isinstance(value, str):  # a flag: a YAML flow mapping, e.g. '{judge: 1.0, env: 0.5}'
            import yaml

            try:
                value = yaml.load(value, Loader=unique_key_loader())
            except yaml.YAMLError:
                raise ConfigError(f"{where}: expected a mapping like '{{key: value}}', got {value!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def config_from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
    """Build ``cls`` from a mapping, checking names and types.

    Raises:
        ConfigError: An unknown key (with the closest known names), a value
            of the wrong type, or whatever the class's own validation says.
    """
    import difflib

    types_ = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        norm = key.replace("-", "_")
        if norm not in names:
            close = difflib.get_close_matches(norm, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown setting {key!r}{hint}")
        kwargs[norm] = _coerce(value, types_[norm], f"{source}: {norm}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from err


@functools.cache
def unique_key_loader() -> type:
    """YAML's safe loader, refusing a mapping that names one key twice.

    Plain YAML keeps the last value of a repeated key, so a config that sets
    ``learning_rate`` twice would silently run with the second one. Keys a
    ``<<`` merge brings in may still be overridden.
    """
    import yaml

    class _UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return _UniqueKeyLoader


def _yaml_problem(err: Exception) -> str:
    """A YAML error in one line: what is wrong and where (``duplicate key 'x' at line 3, column 1``)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(err).split())


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (safe loader only; a key given twice is an error)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    try:
        data = yaml.load(text, Loader=unique_key_loader())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per field of ``cls`` (default ``None`` = not given).

    Flags are only overrides: defaults live in the dataclass, so that a YAML
    file and the flags compose. Help text comes from the field's metadata.
    """
    types_ = _field_types(cls)
    group = parser.add_argument_group(f"{cls.__name__} settings (override the --config file)")
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is not None and default not in ((), ""):
            help_text += f" (default: {default})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %: "30% slower" is text
        inner, _ = _unwrap_optional(types_[f.name])
        if inner is bool:
            group.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(inner) is typing.Literal:
            choices = [str(c) for c in typing.get_args(inner)]
            group.add_argument(flag, dest=f.name, default=None, choices=choices, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def resolve_config(
    cls: type[C],
    *,
    config_file: str | Path | None = None,
    args: argparse.Namespace | None = None,
    overrides: dict[str, Any] | None = None,
) -> C:
    """Dataclass defaults, then the YAML file, then flags, then ``overrides``."""
    data: dict[str, Any] = {}
    source = "settings"
    if config_file is not None:
        data.update(load_yaml(config_file))
        source = str(config_file)
    if args is not None:
        for f in dataclasses.fields(cls):
            value = getattr(args, f.name, None)
            if value is not None:
                data[f.name] = value
    if overrides:
        data.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(cls, data, source=source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A YAML/JSON-friendly dict of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def help_of(cls: type) -> dict[str, str]:
    """Field name -> help text; used by tests to check every field is documented."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
