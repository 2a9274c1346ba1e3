"""Settings as traitlets ``Configurable`` classes, loaded the way Jupyter's are: a folder's JSON
config file, then the command line (``--Class.name=value``), then keyword overrides; an unknown
name or a bad value is an ``InvalidArgument`` that lists what there is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from traitlets import TraitError
from traitlets.config import Config, Configurable
from traitlets.config.loader import JSONFileConfigLoader, KVArgParseConfigLoader

from .errors import InvalidArgument

C = TypeVar("C", bound=Configurable)


def load_settings(
    cls: type[C],
    what: str,
    base: Config,
    folder: Path | None,
    filename: str,
    argv: Sequence[str],
    overrides: Mapping[str, Any],
) -> C:
    """``cls`` configured from ``base``, ``folder/filename``, ``argv`` and ``overrides`` (later
    sources win; ``None`` overrides are ignored). ``what`` names the settings in errors."""
    config = Config()
    config.merge(base)
    section = cls.__name__
    if folder is not None and (folder / filename).exists():
        try:
            config.merge(JSONFileConfigLoader(filename, path=str(folder)).load_config())
        except (ValueError, OSError) as e:
            raise InvalidArgument(f"{folder / filename} is not a JSON traitlets config: {e}") from None
    if argv:
        config.merge(KVArgParseConfigLoader(list(argv)).load_config())
    for key, value in overrides.items():
        if value is not None:
            config[section][key] = value
    names = cls.class_trait_names(config=True)
    unknown = set(config.get(section, {})) - set(names)
    if unknown:
        raise InvalidArgument(
            f"unknown {what} settings {', '.join(sorted(unknown))}: the settings are {', '.join(names)}"
        )
    try:
        return cls(config=config)
    except TraitError as e:
        raise InvalidArgument(f"a {what} setting has a bad value: {e}") from None


def describe_settings(obj: Configurable) -> str:
    """Every setting with its value and help, as ``--Class.name=value`` lines."""
    section = type(obj).__name__
    return "\n".join(
        f"--{section}.{n}={getattr(obj, n)!r}\n    {obj.traits()[n].help}" for n in obj.trait_names(config=True)
    )
