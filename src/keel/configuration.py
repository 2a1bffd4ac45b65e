"""Reading settings from a TOML file and ``KEEL_`` variables, refusing names that are no setting.

``keel.settings`` declares what can be set; this module reads it, and is where a
typo (``prot = 1``, ``KEEL_SERVER__PROT``) stops keel naming the closest valid
setting instead of leaving a default silently in force.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsError,
    TomlConfigSettingsSource,
)

from keel.errors import InvalidConfig
from keel.settings import Settings

ENV_PREFIX = "KEEL_"
ENV_DELIMITER = "__"
# Kubernetes gives every pod variables for each Service in its namespace: a Service
# named keel (deploy/k8s/service.yaml) or keel-anything yields KEEL_SERVICE_HOST,
# KEEL_SERVICE_PORT[_NAME], KEEL_PORT=tcp://..., KEEL_PORT_8080_TCP[_PROTO|_PORT|_ADDR].
_SERVICE_LINK = re.compile(
    r"KEEL_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)"
)
_SERVICE_LINK_PORT = re.compile(r"KEEL_(?:[A-Z0-9_]+_)?PORT")
_SERVICE_LINK_URL = re.compile(r"(?:tcp|udp|sctp)://", re.IGNORECASE)
# An unknown key's whole path must be this close to a setting's to be suggested for it;
# below, only the key's last part is compared (KEEL_PROT -> KEEL_SERVER__PORT).
_WHOLE_PATH_CUTOFF = 0.8

KeyPath = tuple[str | int, ...]
"""Where a key sits in the settings: table names, list indexes, the key."""


def setting_fields(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every setting that holds a value (not a table), with its path, nested ones included."""
    for name, field in model.model_fields.items():
        table = _table_of(field.annotation)
        if table is not None:
            yield from setting_fields(table, (*path, name))
        else:
            yield (*path, name), field


def env_name(path: KeyPath) -> str:
    """The environment variable of the setting at ``path``: ``KEEL_SERVER__PORT``."""
    return ENV_PREFIX + ENV_DELIMITER.join(str(p).upper() for p in path)


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from, by priority: ``KEEL_`` environment variables, a TOML file, the defaults.

    The file holds the same names as the settings, e.g. ``registry = "s3://models"``,
    ``models = ["churn@production"]`` and a ``[batching]`` table. A key in the file
    or a ``KEEL_`` variable that names no setting is refused (:class:`InvalidConfig`),
    naming the closest setting: a typo must not leave a default silently in force.
    """
    environ = dict(os.environ)
    problems = unknown_environment(environ)
    if config_file is not None:
        unknown = [f"{_dotted(p)}{_hint(p, _dotted)}" for p in unknown_keys(_read(config_file))]
        if unknown:
            problems.append(f"config file {config_file} has unknown keys: {', '.join(unknown)}")
    if problems:
        raise InvalidConfig("; ".join(problems) + " (every setting: docs/configuration.md)")
    try:
        if config_file is None:
            return Settings()
        return Settings.model_validate(_with_file(config_file)().model_dump())
    except ValidationError as exc:
        raise InvalidConfig(f"invalid settings: {_located(exc, environ, config_file)}") from None
    except SettingsError as exc:
        # pydantic-settings reads a list or table setting's variable as JSON, and says
        # only which field it was reading when the JSON is not valid.
        problems = not_json_environment(environ) or [str(exc)]
        raise InvalidConfig("invalid settings: " + "; ".join(problems)) from None


def not_json_environment(environ: Mapping[str, str]) -> list[str]:
    """A problem for each ``KEEL_`` variable of a list or table setting that is not JSON.

    ``KEEL_MODELS=churn@production`` is such a mistake: a list is written as JSON,
    ``KEEL_MODELS='["churn@production"]'``.
    """
    problems = []
    for variable, value in environ.items():
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or _SERVICE_LINK.fullmatch(name):
            continue
        shape = _structured_shape(name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))
        if shape is None:
            continue
        try:
            json.loads(value)
        except ValueError:
            kind, example = shape
            if name == "KEEL_MODELS":
                example = '["churn@production"]'
            problems.append(
                f"environment variable {variable} is not valid JSON: its setting is a {kind}, "
                f"written as JSON, e.g. {variable}='{example}'"
            )
    return problems


def _structured_shape(parts: list[str]) -> tuple[str, str] | None:
    """What a list or table setting named ``KEEL_A__B`` (as ``[a, b]``) is, with an example."""
    model: type[BaseModel] = Settings
    index = 0
    while index < len(parts):
        field = model.model_fields.get(parts[index])
        if field is None:
            return None
        table = _table_of(field.annotation)
        entries = _tables_in(field.annotation, dict)
        remaining = len(parts) - 1 - index
        if table is not None:
            if remaining == 0:
                return "table", '{"KEY": VALUE}'
            model, index = table, index + 1
        elif entries is not None:
            if remaining == 0:
                return "table of tables", '{"NAME": {"KEY": VALUE}}'
            if remaining == 1:  # one entry of the mapping, itself a table
                return "table", '{"KEY": VALUE}'
            model, index = entries, index + 2
        elif remaining == 0:
            origin = typing.get_origin(field.annotation)
            if _tables_in(field.annotation, list) is not None:
                return "list of tables", '[{"KEY": VALUE}]'
            if origin in (list, tuple, set, frozenset):
                return "list", '["A", "B"]'
            return ("table", '{"KEY": VALUE}') if origin is dict else None
        else:
            return None
    return None


def _read(config_file: Path) -> dict[str, object]:
    if not config_file.is_file():
        raise InvalidConfig(f"config file {config_file} does not exist")
    try:
        return tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidConfig(f"config file {config_file} is not valid TOML: {exc}") from None


def _with_file(config_file: Path) -> type[Settings]:
    """Settings read from the environment over ``config_file``."""

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file)
            return (init_settings, env_settings, toml)

    return FileSettings


def _located(exc: ValidationError, environ: Mapping[str, str], config_file: Path | None) -> str:
    """Each error with where its value came from: the variable that set it, else the file."""
    given = {name.upper() for name in environ}
    located = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        variable = next(
            (env_name(loc[:n]) for n in range(len(loc), 0, -1) if env_name(loc[:n]) in given),
            None,
        )
        if variable is not None:
            where = variable
        elif config_file is not None:
            where = f"{_dotted(loc)} in {config_file}"
        else:
            where = _dotted(loc)
        located.append(f"{where}: {_message(error['msg'])}")
    return "; ".join(located)


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """A problem for each ``KEEL_`` variable that names no setting (nor one keel allows)."""
    problems = []
    for variable, value in environ.items():
        name = variable.upper()
        if not name.startswith(ENV_PREFIX):
            continue
        if _SERVICE_LINK.fullmatch(name) or (
            _SERVICE_LINK_PORT.fullmatch(name) and _SERVICE_LINK_URL.match(value)
        ):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        path = _unknown_env_path(parts)
        if path is not None:
            problems.append(
                f"environment variable {variable} names no setting{_hint(path, env_name)}"
            )
    return problems


def unknown_keys(
    table: Mapping[str, object], model: type[BaseModel] = Settings, path: KeyPath = ()
) -> Iterator[KeyPath]:
    """The path of every key in a config file's ``table`` that names no setting."""
    for key, value in table.items():
        field = model.model_fields.get(key)
        if field is None:
            yield (*path, key)
            continue
        inner = _table_of(field.annotation)
        if inner is not None and isinstance(value, Mapping):
            yield from unknown_keys(value, inner, (*path, key))
            continue
        inner = _tables_in(field.annotation, list)
        if inner is not None and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from unknown_keys(item, inner, (*path, key, index))
            continue
        inner = _tables_in(field.annotation, dict)
        if inner is not None and isinstance(value, Mapping):
            for entry, item in value.items():
                if isinstance(item, Mapping):
                    yield from unknown_keys(item, inner, (*path, key, entry))


def _unknown_env_path(parts: list[str]) -> KeyPath | None:
    """Where ``KEEL_A__B__C`` (as ``[a, b, c]``) stops naming a setting; None if it names one."""
    model: type[BaseModel] = Settings
    index = 0
    while True:
        field = model.model_fields.get(parts[index])
        last = index == len(parts) - 1
        if field is None:
            return tuple(parts[: index + 1])
        if last:
            return None
        table = _table_of(field.annotation)
        entries = _tables_in(field.annotation, dict)
        if table is not None:
            model, index = table, index + 1
        elif entries is not None:
            # KEEL_DRIFT__MODELS__CHURN__PSI_WARN: a key of the mapping, then a setting.
            if index + 1 == len(parts) - 1:
                return None
            model, index = entries, index + 2
        else:
            return tuple(parts[: index + 2])


def _table_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _tables_in(annotation: object, container: type) -> type[BaseModel] | None:
    """The model of the tables a ``list[Model]`` or ``dict[str, Model]`` setting holds."""
    if typing.get_origin(annotation) is not container:
        return None
    return _table_of(typing.get_args(annotation)[-1])


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """The settings model holding the key at ``path`` (None past a value)."""
    model: type[BaseModel] = Settings
    parts = list(path[:-1])
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        inner = _table_of(field.annotation)
        if inner is None:
            inner = _tables_in(field.annotation, list) or _tables_in(field.annotation, dict)
            if inner is None or not parts:
                return None
            parts.pop(0)  # the list index or the mapping's key
        model = inner
    return model


def closest_setting(path: KeyPath) -> KeyPath | None:
    """The setting a mistyped ``path`` most likely meant, if one is close enough."""
    leaves = [p for p, _ in setting_fields()]
    model = _model_at(path)
    if model is None:
        # Past the end of a setting (KEEL_SERVER__PORT__NUMBER): that setting.
        return next((path[:n] for n in range(len(path) - 1, 0, -1) if path[:n] in leaves), None)
    spelled = {".".join(p): p for p in leaves}
    whole = ".".join(str(p) for p in path)
    match = difflib.get_close_matches(whole, spelled, n=1, cutoff=_WHOLE_PATH_CUTOFF)
    if match:
        return spelled[match[0]]
    key = str(path[-1])
    sibling = difflib.get_close_matches(key, model.model_fields, n=1)
    if sibling:
        return (*path[:-1], sibling[0])
    last = difflib.get_close_matches(key, [p[-1] for p in leaves], n=1)
    return next((p for p in leaves if p[-1] == last[0]), None) if last else None


def _hint(path: KeyPath, spell: Callable[[KeyPath], str]) -> str:
    meant = closest_setting(path)
    return f" (did you mean {spell(meant)}?)" if meant is not None else ""


def _dotted(path: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def describe_errors(exc: ValidationError) -> str:
    """pydantic's errors on one line: ``server.port: Input should be ...; ...``."""
    return "; ".join(
        f"{_dotted(tuple(error['loc']))}: {_message(error['msg'])}" for error in exc.errors()
    )


def _message(message: str) -> str:
    # A validator's own message states the rule; pydantic's "Value error, " adds nothing.
    return message.removeprefix("Value error, ")
