"""
``python -m txlibxl.sim``: run a simulated Xen host, or talk to one.

Sub-commands (see ``--help`` of each):

``run --rundir DIR [--scenario FILE] [--log-level info|debug] [--parent-pid PID]``
    Run the host process (see ``notes/sim-host-protocol.md``); with
    ``--parent-pid``, it exits when that process, its parent, is gone
    (:mod:`txlibxl.sim.lifeline`).
``ctl --rundir DIR OP [key=value ...]``
    Send one control op to a running host and print its JSON result
    (exit status 1 and the error on stderr if the host refuses it).
    Values are JSON where they parse as JSON, strings otherwise:
    ``ctl --rundir DIR create_domain name=web1 vifs=1``.
``scenario --rundir DIR FILE``
    Play a scenario file against a running host.
``stream FILE``
    Check a saved domain (``xl save``'s file, or libxl's stream alone)
    as a restore would and print what the simulator's part carries, as
    JSON (exit status 1 and why on stderr if a restore would refuse it);
    see :mod:`txlibxl.sim.savestream`.

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
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the host's parent) is gone")


def _run(args: argparse.Namespace) -> None:
    if args.parent_pid is not None:
        from twisted.internet import reactor as _reactor

        from .lifeline import die_with_parent

        die_with_parent(args.parent_pid, reactor=_reactor)
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


# -- stream ------------------------------------------------------------------


def _stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a saved domain: xl's save file or libxl's stream")


def _stream(args: argparse.Namespace) -> None:
    import mmap

    from .savestream import StreamError, read_stream, split_libxl_stream

    try:
        if os.path.getsize(args.file) == 0:
            raise StreamError("empty: no stream")
        with open(args.file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start, end = split_libxl_stream(data)
            f.seek(start)
            found = read_stream(f)
    except (OSError, ValueError, StreamError) as e:
        raise SystemExit("%s: %s" % (args.file, e))
    report = {
        "libxl_part": [start, end],
        "header_type": found.header_type,
        "type": found.domain.type,
        "uuid": str(found.domain.uuid),
        "vcpus": found.domain.vcpus,
        "online_vcpus": sorted(found.guest.online_vcpus),
        "memory_kb": found.guest.memory_kb,
        "image_kb": found.domain.image_pages * 4,
        "marker": found.marker.decode("utf-8", errors="replace"),
        "page_records": found.page_records,
        "pages_sent": found.pages_sent,
    }
    sys.stdout.write(json.dumps(report, indent=1) + "\n")


#: Sub-command name -> (help, add its arguments to a parser, run it).
#: New sub-commands (e.g. the lead's ``demo``) are added here.
COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "run": ("run a simulated host process", _run_arguments, _run),
    "ctl": ("send one control op to a running host", _ctl_arguments, _ctl),
    "scenario": ("play a scenario against a running host", _scenario_arguments, _scenario),
    "stream": ("check a saved domain's stream and say what it carries", _stream_arguments, _stream),
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
