"""``routilux-daemon``: the command line of the daemon (DESIGN.md §4 "CLI").

``routilux-daemon [--config PATH] [--debug] [--log-format text|json] <command>``;
the global options are also accepted after the command. Commands: ``run``,
``check``, ``jobs list|show``, ``publish``, ``dlq replay``, ``flows list|graph``.

Exit codes: :data:`EXIT_OK`; :data:`EXIT_CONFIG` for every problem the user can fix
(bad config, flow that does not load, broker down, unknown job), reported as one line
on stderr; :data:`EXIT_USAGE` for bad arguments; :data:`EXIT_INTERNAL` for a bug. A
traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from daemon import cli_amqp, job_queries
from daemon.errors import ConfigError, DaemonError, FlowLoadError
from daemon.flow_loading import FlowLoadReport, load_flows, trigger_problems
from daemon.logging_setup import setup_logging
from daemon.service import run as run_service
from daemon.settings import AmqpTrigger, Settings, Trigger, load_settings
from routilux.monitoring.flow_registry import FlowRegistry

__all__ = ["EXIT_CONFIG", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "main"]

#: Success.
EXIT_OK = 0
#: A problem the user can fix: config, flows, broker, store, unknown job.
EXIT_CONFIG = 1
#: Bad command-line arguments (argparse's own code).
EXIT_USAGE = 2
#: An unexpected error: a bug in the daemon or in flow code.
EXIT_INTERNAL = 70

PROG = "routilux-daemon"
JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
#: Output formats of ``flows graph``.
GRAPH_FORMATS = ("mermaid", "dot")

logger = logging.getLogger(__name__)
Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _apply_global_defaults(args)
    level = (
        logging.DEBUG if args.debug else logging.INFO if args.command == "run" else logging.WARNING
    )
    setup_logging(args.log_format, level)
    _importable_cwd()
    command: Command = args.handler
    try:
        return command(args)
    except DaemonError as exc:
        _fail(str(exc), args.debug)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `jobs list | head`: the reader left, nothing to report
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        reason = f"internal error: {type(exc).__name__}: {exc}"
        _fail(reason + ("" if args.debug else " (run with --debug for the traceback)"), args.debug)
        return EXIT_INTERNAL


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand's ``handler`` is stored in the namespace."""
    parser = argparse.ArgumentParser(prog=PROG, description="Durable Routilux workflow daemon.")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)

    def add(name: str, handler: Command, help_text: str, to: Any = sub) -> Any:
        cmd = to.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(handler=handler)
        return cmd

    add("run", cmd_run, "run the daemon until SIGTERM/SIGINT")
    add("check", cmd_check, "validate config, import flows, print bindings")
    jobs = sub.add_parser("jobs", help="inspect jobs in the store").add_subparsers(
        dest="jobs_command", required=True, metavar="<jobs-command>"
    )
    listing = add("list", cmd_jobs_list, "list jobs, newest first", jobs)
    listing.add_argument("--status", choices=JOB_STATUSES)
    listing.add_argument("--flow")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = add("show", cmd_jobs_show, "show one job: status, errors, pending work", jobs)
    show.add_argument("job_id")
    show.add_argument("--json", action="store_true", help="print the stored row as JSON")
    publish = add("publish", cmd_publish, "publish a JSON message to a flow's bound queue")
    publish.add_argument("flow")
    publish.add_argument("--data", required=True, help="JSON object: the job's entry params")
    publish.add_argument("--queue", help="which bound queue, when the flow has several")
    publish.add_argument("--message-id", help="idempotency key (default: a new uuid)")
    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(
        dest="dlq_command", required=True, metavar="<dlq-command>"
    )
    replay = add("replay", cmd_dlq_replay, "move messages from QUEUE.dlq back to QUEUE", dlq)
    replay.add_argument("queue")
    replay.add_argument("--limit", type=int, help="move at most this many")
    flows = sub.add_parser("flows", help="registered flows").add_subparsers(
        dest="flows_command", required=True, metavar="<flows-command>"
    )
    add("list", cmd_flows_list, "list flows with their triggers", flows)
    graph = add("graph", cmd_flows_graph, "print a picture of one flow (Mermaid or DOT)", flows)
    graph.add_argument("name", help="the flow's registered name")
    graph.add_argument(
        "--format", choices=GRAPH_FORMATS, default="mermaid", help="default: mermaid"
    )
    return parser


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # Subcommands get SUPPRESS defaults so an option given before the command survives.
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--config", type=Path, default=default(None), help="TOML config file")
    parser.add_argument("--debug", action="store_true", default=default(False))
    parser.add_argument("--log-format", choices=("text", "json"), default=default("text"))


def _apply_global_defaults(args: argparse.Namespace) -> None:
    for name, value in (("config", None), ("debug", False), ("log_format", "text")):
        if not hasattr(args, name):
            setattr(args, name, value)


def _log_level(args: argparse.Namespace) -> int:
    # One-shot commands print their results; only `run` narrates at INFO.
    if args.debug:
        return logging.DEBUG
    return logging.INFO if args.command == "run" else logging.WARNING


def _importable_cwd() -> None:
    # Flow modules live in the user's project; the console script's sys.path[0] is the
    # venv's bin directory, so make the working directory importable like `python -m`.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _fail(reason: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"{PROG}: error: {reason}", file=sys.stderr)


# -- run / check / flows ----------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Start the service and block until it stops; return its exit code."""
    settings = load_settings(args.config)
    return run_service(settings)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything; print bindings and the redacted config, or every problem."""
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _report_problems(exc.problems)
    registry = FlowRegistry.get_instance()
    report = load_flows(settings.flows, registry)
    problems = report.problems + trigger_problems(settings.triggers, registry)
    problems += _store_problems(settings.store.path)
    if problems:
        return _report_problems(problems)
    _print_flows(report)
    print("bindings:")
    for trigger in settings.triggers:
        print(f"  {trigger.name:<28} {_describe_binding(trigger, registry)}")
    if not settings.triggers:
        print("  (none)")
    print("effective config (redacted):")
    print(json.dumps(settings.redacted(), indent=2))
    print("OK")
    return EXIT_OK


def _loaded_flows(args: argparse.Namespace) -> tuple[Settings, FlowRegistry]:
    """The settings and the registry with every configured flow loaded; raises on problems."""
    settings = load_settings(args.config)
    registry = FlowRegistry.get_instance()
    report = load_flows(settings.flows, registry)
    if report.problems:
        raise FlowLoadError(report.problems)
    return settings, registry


def cmd_flows_list(args: argparse.Namespace) -> int:
    """Print each registered flow with the triggers bound to it."""
    settings, registry = _loaded_flows(args)
    for name in sorted(registry.list_names()):
        bound = [t for t in settings.triggers if t.flow == name]
        print(name)
        for trigger in bound:
            print(f"  {trigger.name:<28} {_describe_binding(trigger, registry)}")
        if not bound:
            print("  (no triggers)")
    return EXIT_OK


def cmd_flows_graph(args: argparse.Namespace) -> int:
    """Print the flow registered as NAME as Mermaid ``flowchart`` or Graphviz DOT text."""
    _, registry = _loaded_flows(args)
    flow = registry.get_by_name(args.name)
    if flow is None:
        known = ", ".join(sorted(registry.list_names())) or "none registered"
        raise DaemonError(f"unknown flow {args.name!r} (known: {known})")
    print(flow.to_dot() if args.format == "dot" else flow.to_mermaid())
    return EXIT_OK


def _report_problems(problems: list[str]) -> int:
    for problem in problems:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s) found", file=sys.stderr)
    return EXIT_CONFIG


def _print_flows(report: FlowLoadReport) -> None:
    print("flows:")
    for source, names in report.sources.items():
        for name in names:
            print(f"  {name:<28} ({source})")
    if not report.flow_names:
        print("  (none)")


def _describe_binding(trigger: Trigger, registry: FlowRegistry) -> str:
    entry = trigger.entry if isinstance(trigger, AmqpTrigger) else None
    flow = registry.get_by_name(trigger.flow)
    if flow is None:  # check/flows list validated the triggers first
        raise FlowLoadError([f"{trigger.name}: unknown flow {trigger.flow!r}"])
    routine_id, slot = flow.resolve_entry(entry)
    target = f"-> {trigger.flow} (entry {routine_id}.{slot})"
    if isinstance(trigger, AmqpTrigger):
        return f"queue {trigger.queue} {target}"
    if trigger.type == "interval":
        return f"every {trigger.seconds:g}s {target}"
    return f'cron "{trigger.cron}" {trigger.timezone} {target}'


def _store_problems(path: Path) -> list[str]:
    # The store creates its directory; check the nearest existing ancestor is writable.
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        return [f"store.path: {path}: directory {ancestor} is not writable"]
    if path.exists() and not path.is_file():
        return [f"store.path: {path} exists and is not a file"]
    return []


# -- jobs -------------------------------------------------------------------------------


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """Print jobs from the store, newest first."""
    settings = load_settings(args.config)
    rows = job_queries.list_jobs(settings.store.path, args.status, args.flow, args.limit)
    if args.json:
        print(json.dumps([_row_summary(row) for row in rows], indent=2))
    else:
        print(job_queries.format_table(rows))
    return EXIT_OK


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """Print one job: status, timestamps, error, routine states and pending work."""
    settings = load_settings(args.config)
    row = job_queries.get_job(settings.store.path, args.job_id)
    if row is None:
        raise DaemonError(f"no job {args.job_id!r} in {settings.store.path}")
    print(json.dumps(asdict(row), indent=2) if args.json else job_queries.format_detail(row))
    return EXIT_OK


def _row_summary(row: job_queries.JobRow) -> dict[str, Any]:
    summary = asdict(row)
    del summary["state"]
    return summary


# -- AMQP -------------------------------------------------------------------------------


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish ``--data`` to the queue bound to FLOW; print the message_id."""
    settings = load_settings(args.config)
    data = _json_object(args.data)
    queue = _bound_queue(settings, args.flow, args.queue)
    _quiet_amqp_logs(args.debug)
    url = settings.amqp.url.get_secret_value()
    message_id = asyncio.run(cli_amqp.publish_json(url, queue, data, args.message_id))
    print(f"published message_id={message_id} queue={queue}")
    return EXIT_OK


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """Move messages from ``QUEUE.dlq`` back to ``QUEUE``."""
    settings = load_settings(args.config)
    _quiet_amqp_logs(args.debug)
    url = settings.amqp.url.get_secret_value()
    moved = asyncio.run(cli_amqp.replay_dead_letters(url, args.queue, args.limit))
    print(f"moved {moved} message(s) from {args.queue}{cli_amqp.DLQ_SUFFIX} to {args.queue}")
    return EXIT_OK


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DaemonError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DaemonError(f"--data must be a JSON object, got {type(data).__name__}")
    return data


def _bound_queue(settings: Settings, flow: str, wanted: str | None) -> str:
    queues = [t.queue for t in settings.triggers if isinstance(t, AmqpTrigger) and t.flow == flow]
    if not queues:
        raise DaemonError(f"flow {flow!r} has no amqp trigger in the config")
    if wanted is None:
        return queues[0]
    if wanted not in queues:
        raise DaemonError(f"queue {wanted!r} is not bound to flow {flow!r} (bound: {queues})")
    return wanted


def _quiet_amqp_logs(debug: bool) -> None:
    # aiormq logs a connect failure at ERROR and then raises; the CLI's one-line
    # reason already says it, so keep the library's line for --debug.
    if not debug:
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
