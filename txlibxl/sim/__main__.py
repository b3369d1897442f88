"""
``python -m txlibxl.sim``: run a simulated Xen host, or talk to one.

Sub-commands (see ``--help`` of each):

``run --rundir DIR [--scenario FILE] [--log-level info|debug]``
    Run the host process (see ``notes/sim-host-protocol.md``).
``ctl --rundir DIR OP [key=value ...]``
    Send one control op to a running host and print its JSON result
    (exit status 1 and the error on stderr if the host refuses it).
    Values are JSON where they parse as JSON, strings otherwise:
    ``ctl --rundir DIR create_domain name=web1 vifs=1``.
``scenario --rundir DIR FILE``
    Play a scenario file against a running host.

Every sub-command is one entry of :data:`COMMANDS`.
"""
import argparse
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer, task
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

__all__ = ["COMMANDS", "main"]


def _start_logging(level: str) -> None:
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _rundir_json(rundir: str) -> Dict[str, Any]:
    path = os.path.join(rundir, "host.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit("no running host in %s: %s" % (rundir, e))


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- run ---------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rundir", required=True, help="directory for the sockets, host.json and root/")
    parser.add_argument("--scenario", help="a scenario file to play from the start")
    parser.add_argument("--log-level", default="info", choices=("info", "debug"))


def _run(args: argparse.Namespace) -> None:
    _start_logging(args.log_level)
    from .host_process import serve

    async def main(reactor) -> None:
        # task.react calls us before the reactor runs, that is before its
        # SIGTERM/SIGINT handlers are installed: announcing "ready" before
        # then would let an early signal kill the host uncleanly.
        running: defer.Deferred = defer.Deferred()
        reactor.callWhenRunning(running.callback, None)
        await running
        status = await serve(reactor, args.rundir, args.scenario, debug=args.log_level == "debug")
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


# -- ctl ---------------------------------------------------------------------


def _ctl_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rundir", required=True, help="the running host's run directory")
    parser.add_argument("op", help="the control op, e.g. list, create_domain, destroy")
    parser.add_argument("args", nargs="*", metavar="key=value", help="the op's arguments (values are JSON or strings)")


def _ctl(args: argparse.Namespace) -> None:
    op_args = {}
    for item in args.args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit("arguments are key=value, got %r" % item)
        op_args[key] = _parse_value(value)
    info = _rundir_json(args.rundir)
    from .control import ControlClient, ControlError

    async def main(reactor) -> None:
        client = await ControlClient.connect(reactor, info["control"])
        try:
            result = await client.call(args.op, **op_args)
        except ControlError as e:
            sys.stderr.write("%s: %s\n" % (e.type, e.message))
            raise SystemExit(1)
        finally:
            await client.disconnect()
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        sys.stdout.flush()

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


# -- scenario ------------------------------------------------------------------


def _scenario_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rundir", required=True, help="the running host's run directory")
    parser.add_argument("file", help="the scenario JSON file")
    parser.add_argument("--log-level", default="info", choices=("info", "debug"))


def _scenario(args: argparse.Namespace) -> None:
    _start_logging(args.log_level)
    from .control import ControlClient
    from .scenario import ScenarioError, ScenarioRunner, load

    try:
        scenario = load(args.file)
    except ScenarioError as e:
        raise SystemExit(str(e))
    info = _rundir_json(args.rundir)

    async def main(reactor) -> None:
        client = await ControlClient.connect(reactor, info["control"])
        try:
            results = await ScenarioRunner(reactor, lambda op, a: client.call(op, **a)).run(scenario)
        except ScenarioError as e:
            sys.stderr.write("%s\n" % e)
            raise SystemExit(1)
        finally:
            await client.disconnect()
        sys.stdout.write(json.dumps(results, indent=1) + "\n")

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


#: Sub-command name -> (help, add its arguments to a parser, run it).
#: New sub-commands (e.g. the lead's ``demo``) are added here.
COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "run": ("run a simulated host process", _run_arguments, _run),
    "ctl": ("send one control op to a running host", _ctl_arguments, _ctl),
    "scenario": ("play a scenario against a running host", _scenario_arguments, _scenario),
}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m txlibxl.sim", description="A simulated Xen host.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    COMMANDS[args.command][2](args)


if __name__ == "__main__":
    main()
