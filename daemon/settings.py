"""Daemon configuration: a TOML file overridden by ``ROUTILUX_<SECTION>__<KEY>`` env vars.

The shape is fixed by DESIGN.md §4 "Config". Every section forbids unknown keys, so
a typo fails at startup naming the key. :func:`load_settings` is the one entry
point; :func:`collect_config_problems` returns every problem at once (for ``check``).

Precedence, highest first: environment, TOML file, defaults. ``Settings(...)``
built directly (tests) ignores the file but still sees the environment.
"""

from __future__ import annotations

import sys
import zoneinfo
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from apscheduler.triggers.cron import CronTrigger as ApsCronTrigger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from daemon.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AmqpSettings",
    "AmqpTrigger",
    "CronTrigger",
    "FlowsSettings",
    "IntervalTrigger",
    "MetricsSettings",
    "RuntimeSettings",
    "Settings",
    "StoreSettings",
    "Trigger",
    "collect_config_problems",
    "load_settings",
]

#: Used when ``--config`` is not given; relative to the working directory.
DEFAULT_CONFIG_PATH = Path("config/daemon.toml")

#: Keys whose values never appear in error messages.
_SECRET_KEYS = ("url",)

CatchUp = Literal["skip", "once", "all"]


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RuntimeSettings(_Section):
    """``[runtime]``: the engine's thread pool and the drain grace period."""

    threads: int = Field(default=10, ge=1, le=1024)
    #: Seconds running jobs get to finish on SIGTERM before they are checkpointed.
    shutdown_timeout: float = Field(default=30.0, ge=0)


class StoreSettings(_Section):
    """``[store]``: the SQLite checkpoint store."""

    path: Path = Path("var/routilux.db")
    # "full" by default: in WAL mode "normal" may lose the last commits on power loss,
    # and the daemon promises that a power loss loses nothing.
    synchronous: Literal["normal", "full"] = "full"
    #: Finished jobs older than this many days are deleted; 0 keeps them forever.
    retention_days: int = Field(default=7, ge=0)
    #: A job resumed this many times (crash loop) is marked failed instead.
    max_resumes: int = Field(default=5, ge=1)


class AmqpSettings(_Section):
    """``[amqp]``: the RabbitMQ connection shared by every amqp trigger."""

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    prefetch: int = Field(default=10, ge=1, le=65535)
    dead_letter_exchange: str = Field(default="routilux.dlx", min_length=1)
    ack: Literal["on_checkpoint", "on_complete"] = "on_checkpoint"

    @field_validator("url")
    @classmethod
    def _amqp_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value


class MetricsSettings(_Section):
    """``[metrics]``: the HTTP server for /metrics, /healthz and /readyz (port 0: any free)."""

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class FlowsSettings(_Section):
    """``[flows]``: where flows come from (modules to import, flow files or directories)."""

    modules: list[str] = Field(default_factory=list)
    paths: list[Path] = Field(default_factory=list)


class _TriggerBase(_Section):
    flow: str = Field(min_length=1)
    #: Overrides the default trigger name (``jobs.trigger`` column, metric label).
    id: str | None = Field(default=None, min_length=1)

    @property
    def name(self) -> str:
        """The trigger's name: its ``id`` if set, else the default for its type."""
        return self.id or self.default_name()

    def default_name(self) -> str:  # pragma: no cover - overridden by every subclass
        raise NotImplementedError


class AmqpTrigger(_TriggerBase):
    """``type = "amqp"``: each message on ``queue`` starts a job of ``flow``."""

    type: Literal["amqp"]
    queue: str = Field(min_length=1)
    #: ``"routine.slot"`` receiving the message body; default: the flow's entry.
    entry: str | None = Field(default=None, pattern=r"^[^.\s]+\.[^.\s]+$")

    def default_name(self) -> str:
        return f"amqp:{self.queue}"


class _TimerTrigger(_TriggerBase):
    #: Entry params of every job this timer starts.
    params: dict[str, Any] = Field(default_factory=dict)
    #: Fires missed while the daemon was down: none, one, or every one of them.
    catch_up: CatchUp = "once"
    max_instances: int = Field(default=1, ge=1)


class IntervalTrigger(_TimerTrigger):
    """``type = "interval"``: a job of ``flow`` every ``seconds``."""

    type: Literal["interval"]
    seconds: float = Field(gt=0)

    def default_name(self) -> str:
        return f"interval:{self.flow}"


class CronTrigger(_TimerTrigger):
    """``type = "cron"``: a job of ``flow`` on a crontab schedule in ``timezone``."""

    type: Literal["cron"]
    cron: str
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("cron")
    @classmethod
    def _valid_crontab(cls, value: str) -> str:
        # APScheduler is the component that will interpret it, so it is the judge.
        try:
            ApsCronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid crontab expression {value!r}: {exc}") from exc
        return value

    def default_name(self) -> str:
        return f"cron:{self.flow}"


Trigger = Annotated[AmqpTrigger | IntervalTrigger | CronTrigger, Field(discriminator="type")]


class Settings(BaseSettings):
    """The whole daemon configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="ROUTILUX_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    amqp: AmqpSettings = Field(default_factory=AmqpSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    flows: FlowsSettings = Field(default_factory=FlowsSettings)
    triggers: list[Trigger] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _unique_trigger_names(self) -> Settings:
        seen: dict[str, int] = {}
        for index, trigger in enumerate(self.triggers):
            if trigger.name in seen:
                raise ValueError(
                    f"triggers[{index}]: duplicate trigger name {trigger.name!r} "
                    f"(also triggers[{seen[trigger.name]}]); set a distinct id"
                )
            seen[trigger.name] = index
        return self

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, with the AMQP password masked."""
        data = self.model_dump(mode="json")
        data["amqp"]["url"] = redact_url(self.amqp.url.get_secret_value())
        return data


def redact_url(url: str) -> str:
    """``amqp://user:secret@host/`` -> ``amqp://user:***@host/`` (no password: unchanged)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def load_settings(path: Path | None = None) -> Settings:
    """Read the TOML file at ``path`` (default :data:`DEFAULT_CONFIG_PATH`), apply env vars.

    A missing *default* file is not an error (env vars and defaults apply); a missing
    explicit file is.

    Raises:
        ConfigError: unreadable file, TOML syntax error, unknown key or bad value;
            ``problems`` has one line per problem, each naming the key.
    """
    data = _read_toml(path)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def collect_config_problems(path: Path | None = None) -> tuple[Settings | None, list[str]]:
    """Load settings like :func:`load_settings`, but return problems instead of raising."""
    try:
        return load_settings(path), []
    except ConfigError as exc:
        return None, exc.problems


def _read_toml(path: Path | None) -> dict[str, Any]:
    target = path if path is not None else DEFAULT_CONFIG_PATH
    if path is None and not target.exists():
        return {}
    try:
        with target.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
            return data
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {target}"]) from None
    except OSError as exc:
        raise ConfigError([f"cannot read config file {target}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{target}: invalid TOML: {exc}"]) from None


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per error: ``amqp.prefetch: Input should be ... (got 'x')``."""
    problems = []
    for error in exc.errors(include_url=False):
        key = _format_loc(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if _shows_input(error["type"], key):
            message += f" (got {_short(error['input'])})"
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{key}: {message}" if key else message)
    return problems


def _shows_input(error_type: str, key: str) -> bool:
    # Our own validators already quote the value; a secret is never echoed.
    quiet = ("missing", "extra_forbidden", "value_error", "union_tag_invalid")
    return bool(key) and error_type not in quiet and not key.endswith(_SECRET_KEYS)


def _format_loc(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif index > 0 and isinstance(loc[index - 1], int) and item in ("amqp", "interval", "cron"):
            continue  # the discriminator tag pydantic adds after a list index
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
