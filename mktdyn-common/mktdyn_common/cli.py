"""The console-script entry point of every mktdyn Singer plugin: a fatal error is one line, never a traceback.

docs/architecture.md §9.5: configuration, authentication, quota and store errors exit non-zero with a one-line reason
naming the setting or the API's code. Left alone, the SDK's command line does not: a config file that is not JSON
escapes click's option parsing as a traceback, the SDK's ``sys.excepthook`` logs any error of a run with its
traceback, and a config that fails validation is logged as several lines ending in "Config validation failed".
Meltano shows a plugin's stderr to the user, and there a traceback buries the one line that says what to fix.

:func:`run_plugin` runs the SDK's own click command, unchanged (same options, same output, same exit code when
nothing fails), in click's non-standalone mode so that every exception comes back to it, and turns each into
one line ``<plugin>: <reason>`` on stderr:

- a config, state or catalog file that is missing, unreadable, not JSON or not a JSON object: names the file
  (exit 2, click's code for a bad command line);
- the SDK's config validation: names each setting and its problem (exit 1);
- any :class:`~mktdyn_common.errors.MktdynError`: its message, which names the setting or the API's code and,
  for a spent quota, when to retry (exit 1);
- anything else is a bug: the exception's type and message (exit 1).

Each failure's traceback is logged at DEBUG only. ``SystemExit`` passes through untouched: a plugin that has
already said why it stops (``SystemExit("target-mktdyn-merge: ...")``) keeps its words and exit code. Secret
values never appear: the secret settings of the plugin's ``config_jsonschema`` are registered with the
redactor as soon as the config is read, and every line is redacted.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit

import click
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.plugin_base import PluginBase

from mktdyn_common.errors import MktdynError
from mktdyn_common.redact import protect_secrets, redact

#: Exit code of every failure but a bad command line (click's usage errors, an unreadable input file: 2).
FAILURE_EXIT = 1

#: The SDK's words for a missing setting and for an error at a config path (``_format_validation_error``).
_REQUIRED = re.compile(r"^'(?P<name>[^']+)' is a required property$")
_AT_PATH = re.compile(r"^(?P<problem>.*) in config(?P<path>(?:\[[^\]]+\])+)$", re.DOTALL)
_PATH_PART = re.compile(r"\[('?)(.*?)\1\]")


class InvalidConfigError(MktdynError):
    """The SDK refused the config; the message names each setting at fault and its problem.

    Raised in place of the SDK's ``ConfigValidationError``, which the SDK's command would catch and log as
    several lines of its own.
    """

    def __init__(self, error: ConfigValidationError) -> None:
        problems = [describe_config_problem(problem) for problem in error.errors] or [str(error)]
        super().__init__("; ".join(problems))


def describe_config_problem(problem: str) -> str:
    """One validation error of the SDK as ``setting 'x': problem`` (the form of ``ConfigurationError``)."""
    required = _REQUIRED.match(problem)
    if required:
        return f"setting {required['name']!r}: is required"
    located = _AT_PATH.match(problem)
    if located:
        setting = ".".join(part for _quote, part in _PATH_PART.findall(located["path"]))
        return f"setting {setting!r}: {located['problem']}"
    return problem


def plugin_main(plugin: type[PluginBase]) -> Callable[[], NoReturn]:
    """The console-script entry point of ``plugin`` (``[project.scripts] tap-x = "tap_x.tap:main"``)."""

    def main() -> NoReturn:
        sys.exit(run_plugin(plugin))

    main.__doc__ = f"Run {plugin.name}'s command line; a fatal error ends it with one line on stderr."
    return main


def run_plugin(plugin: type[PluginBase], args: Sequence[str] | None = None) -> int:
    """Run the SDK command line of ``plugin`` with ``args`` (default: ``sys.argv``); return the exit code."""
    command = plugin.cli  # also sets up the SDK's console logging
    _guard_inputs(command, plugin)
    _guard_callback(command)
    logger = logging.getLogger(plugin.name)
    try:
        outcome = command.main(args=args, prog_name=plugin.name, standalone_mode=False)
    except click.ClickException as exc:
        return _fail(plugin.name, exc.format_message(), exc.exit_code, logger)
    except click.Abort:
        return _fail(plugin.name, "aborted", FAILURE_EXIT, logger)
    except ConfigValidationError as exc:  # raised outside the run's callback (e.g. while discovering)
        return _fail(plugin.name, str(InvalidConfigError(exc)), FAILURE_EXIT, logger)
    except MktdynError as exc:
        return _fail(plugin.name, str(exc), FAILURE_EXIT, logger)
    except BrokenPipeError:
        _silence_stdout()
        return _fail(plugin.name, "the reader of its output went away (broken pipe)", FAILURE_EXIT, logger)
    except Exception as exc:
        return _fail(plugin.name, f"unexpected {type(exc).__name__}: {exc}", FAILURE_EXIT, logger)
    return outcome if isinstance(outcome, int) else 0


def _fail(name: str, reason: str, code: int, logger: logging.Logger) -> int:
    """Log the traceback at DEBUG, then print the reason as one redacted line."""
    if sys.exc_info()[0] is not None:
        logger.debug("%s stopped: %s", name, reason, exc_info=True)
    lines = [part.strip() for part in redact(reason).splitlines() if part.strip()]
    sys.stderr.write(f"{name}: {' '.join(lines) or 'failed'}\n")
    sys.stderr.flush()
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout to redirect (captured, closed)
        pass


# -- the command's inputs --------------------------------------------------------------------------------------
def _params(command: click.Command, name: str) -> Iterator[click.Parameter]:
    return (param for param in command.params if param.name == name)


def _guard_inputs(command: click.Command, plugin: type[PluginBase]) -> None:
    """Check ``--config``, ``--state`` and ``--catalog`` files before the SDK reads them."""
    for param in _params(command, "config"):
        param.callback = _checked_config(plugin, param.callback)
    for name in ("state", "catalog"):
        for param in _params(command, name):
            param.callback = _checked_json_file(name, param.callback)


def _checked_config(plugin: type[PluginBase], parse: Callable[..., Any] | None) -> Callable[..., Any]:
    """``--config``: each file must be a JSON object; its secret settings are masked from then on."""

    def callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
        for path in value:
            if path != "ENV":
                _protect_secret_settings(plugin, _read_json_object("config", path))
        return parse(ctx, param, value) if parse is not None else value

    return callback


def _checked_json_file(kind: str, parse: Callable[..., Any] | None) -> Callable[..., Any]:
    """``--state`` / ``--catalog`` (a file click has opened): must hold a JSON object; handed on unread."""

    def callback(ctx: click.Context, param: click.Parameter, value: IO[str] | None) -> Any:
        if value is not None:
            name = getattr(value, "name", "-")
            try:
                text = value.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise click.UsageError(f"{kind} file {name} cannot be read: {_reason(exc)}") from exc
            _parse_json_object(kind, name, text)
            value = io.StringIO(text)
        return parse(ctx, param, value) if parse is not None else value

    return callback


def _read_json_object(kind: str, path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise click.UsageError(f"{kind} file {path} " + ("is not a file" if file.exists() else "does not exist"))
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{kind} file {path} cannot be read: {_reason(exc)}") from exc
    return _parse_json_object(kind, path, text)


def _parse_json_object(kind: str, path: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:  # the message gives the position only, never the file's content
        raise click.UsageError(f"{kind} file {path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise click.UsageError(f"{kind} file {path} is not a JSON object (it holds a {type(value).__name__})")
    return value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _protect_secret_settings(plugin: type[PluginBase], config: Mapping[str, Any]) -> None:
    """Register the values of settings the plugin flags secret, before anything can print them."""
    properties = plugin.config_jsonschema.get("properties") or {}
    protect_secrets(
        _secret_part(str(config[name]))
        for name, schema in properties.items()
        if isinstance(schema, Mapping)
        and (schema.get("secret") or schema.get("writeOnly"))
        and isinstance(config.get(name), str | int | float)
    )


def _secret_part(value: str) -> str | None:
    """What of a secret setting to mask: a URL's password (its host and database name stay readable), else all.

    A store URL is secret because it may carry the database password; masking the whole URL would hide which
    store a message is about (and a SQLite path has no secret at all).
    """
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        return parts.password or None  # as written in the URL; the store registers its decoded form
    except ValueError:  # not a URL after all: mask it whole
        return value


# -- the command's run -----------------------------------------------------------------------------------------
def _guard_callback(command: click.Command) -> None:
    """Raise config validation failures of the run past the SDK command, which would log them as many lines."""
    run = command.callback
    if run is None:
        return

    def callback(*args: Any, **kwargs: Any) -> Any:
        try:
            return run(*args, **kwargs)
        except ConfigValidationError as exc:
            raise InvalidConfigError(exc) from exc

    command.callback = callback
