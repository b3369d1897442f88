#!/usr/bin/env python3
"""
Run txlibxl's real-Xen tests: Xen 4.17 and a Debian dom0 under QEMU.

    xen/runner.py [--timeout SECONDS] [--tests NAME ...] [--record] [--cache DIR]

1. The base image (hypervisor, dom0 kernel, bookworm userland) is built by
   ``xen/build-image.sh`` into ``<cache>/base-<key>``, where the key hashes
   the image's inputs (``xen/packages.txt``, ``xen/build-image.sh``).  It
   is reused while they do not change.
2. The current checkout is layered on top by ``xen/build-overlay.sh`` (the
   binding is compiled in the image's chroot on every run).
3. QEMU boots Xen and dom0 (``-accel kvm`` if the host has hardware
   virtualisation and it boots, else TCG); dom0's ``/init`` runs the trial
   tests under ``timeout`` and powers off.  This script enforces an outer
   time limit too and kills QEMU when it passes.
4. The serial log is parsed for the markers of ``xen/init`` and
   ``xen/dom0_trial.py``; a trial-style summary names every test, with the
   boot and total times.  The serial log is kept (``<cache>/runs/``) and
   its path printed.

Exit status: 0 if every test passed or was skipped (or the whole run was
skipped because a prerequisite is missing: then it says SKIPPED and why),
1 on any failure, crash or timeout, 2 on bad usage.

No dependency beyond the Python standard library: it runs with the host's
python3, outside the project's virtualenv.
"""
from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
SEQUENCES = os.path.join(CHECKOUT, "tests", "realxen", "sequences.json")
#: The files whose content decides whether the cached base image is current.
IMAGE_INPUTS = ("packages.txt", "build-image.sh")
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "debootstrap": "debootstrap",
    "cpio": "cpio",
    "chroot": "coreutils",
    "gzip": "gzip",
}
XEN_CMDLINE = (
    "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all console_timestamps=boot "
    "dom0_mem=1024M,max:1024M bootscrub=false"
)
DOM0_CMDLINE = "console=hvc0 earlyprintk=xen rdinit=/init"


def say(text: str) -> None:
    print(text, flush=True)


# -- prerequisites and mirrors -------------------------------------------------


def missing_prerequisite() -> Optional[str]:
    """Why the real-Xen tests cannot run on this host, or None."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "needs an x86_64 Linux host"
    if os.geteuid() != 0:
        return "needs root (debootstrap and chroot build the dom0 image)"
    lacking = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if lacking:
        return "missing host packages: " + " ".join(lacking)
    return None


def apt_mirrors() -> Tuple[Optional[str], Optional[str]]:
    """
    The host's Debian and Debian-security mirror URLs, from its apt sources
    (one-line and deb822 formats), unless DEBIAN_MIRROR and
    DEBIAN_SECURITY_MIRROR say otherwise.
    """
    main = os.environ.get("DEBIAN_MIRROR")
    security = os.environ.get("DEBIAN_SECURITY_MIRROR")
    entries: List[Tuple[str, List[str]]] = []
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for para in re.split(r"\n\s*\n", text):
                fields = dict(
                    (m.group(1).lower(), m.group(2).split())
                    for m in re.finditer(r"^(\w[\w-]*):\s*(.*)$", para, re.M)
                )
                for uri in fields.get("uris", []):
                    entries.append((uri, fields.get("suites", [])))
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    for uri, suites in entries:
        if main is None and any(s in ("bookworm", "stable") for s in suites):
            main = uri.rstrip("/")
        if security is None and any(s.startswith("bookworm-security") for s in suites):
            security = uri.rstrip("/")
    if security is None and main is not None and main.endswith("/debian"):
        security = main + "-security"
    return main, security


def image_key() -> str:
    h = hashlib.sha256()
    for name in IMAGE_INPUTS:
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()[:16]


# -- the serial log ------------------------------------------------------------


@dataclass
class TestResult:
    status: str
    seconds: float
    test_id: str
    detail: str = ""
    traceback: List[str] = field(default_factory=list)


@dataclass
class Run:
    """What the serial log said, as it arrived (times from QEMU's start)."""

    started: float
    xen_banner: Optional[float] = None
    dom0_init: Optional[float] = None
    toolstack: Optional[float] = None
    toolstack_failed: Optional[str] = None
    done_rc: Optional[int] = None
    done_at: Optional[float] = None
    versions: str = ""
    xen: str = ""
    tests: List[TestResult] = field(default_factory=list)
    sequences: Dict[str, dict] = field(default_factory=dict)
    summary: Optional[dict] = None
    crash: Optional[str] = None
    timed_out: bool = False

    def feed(self, line: str, now: float) -> None:
        at = now - self.started
        # Markers may follow other console output on the same line.
        m = re.search(r"(REALXEN-[A-Z0-9-]+|DOM0-TESTS-DONE)(.*)$", line)
        if "Xen version" in line and self.xen_banner is None:
            self.xen_banner = at
        if re.search(r"Dom0 crashed|Panic on CPU|Kernel panic - not syncing", line) and self.crash is None:
            self.crash = line.strip()
        if not m:
            return
        marker, rest = m.group(1), m.group(2).strip()
        if marker == "REALXEN-DOM0-INIT":
            self.dom0_init = at
        elif marker == "REALXEN-TOOLSTACK-READY":
            self.toolstack = at
            say(f"[{at:7.1f}s] dom0 toolstack ready")
        elif marker == "REALXEN-TOOLSTACK-FAILED":
            self.toolstack_failed = rest
        elif marker == "REALXEN-VERSIONS":
            self.versions = rest
        elif marker == "REALXEN-XEN":
            self.xen = rest
        elif marker == "REALXEN-TEST":
            parts = rest.split(" ", 3)
            if len(parts) >= 3:
                detail = parts[3] if len(parts) > 3 else ""
                self.tests.append(TestResult(parts[0], float(parts[1]), parts[2], detail))
                say(f"[{at:7.1f}s] {parts[0]:6} {parts[2]} ({parts[1]} s) {detail}".rstrip())
        elif marker == "REALXEN-TB" and self.tests:
            self.tests[-1].traceback.append(line[m.start(2) + 1 :] if len(m.group(2)) else "")
        elif marker == "REALXEN-SEQUENCE":
            try:
                data = json.loads(rest)
                self.sequences[data["scenario"]] = data["recording"]
            except (ValueError, KeyError, TypeError):
                pass
        elif marker == "REALXEN-SUMMARY":
            try:
                self.summary = json.loads(rest)
            except ValueError:
                pass
        elif marker == "DOM0-TESTS-DONE":
            rc = re.match(r"rc=(\d+)", rest)
            self.done_rc = int(rc.group(1)) if rc else -1
            self.done_at = at


def has_hardware_virtualisation() -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return bool(re.search(r"^flags\s*:.*\b(svm|vmx)\b", flags, re.M))


def qemu_command(accel: str, base: str, initrd: str, timeout: int, tests: List[str]) -> List[str]:
    dom0 = f"{DOM0_CMDLINE} realxen.timeout={timeout}"
    if tests:
        dom0 += " realxen.tests=" + ":".join(tests)
    if accel == "kvm":
        machine = ["-accel", "kvm", "-cpu", "host"]
    else:
        machine = ["-accel", "tcg,tb-size=256", "-cpu", "qemu64,+npt"]
    # A comma inside a multiboot module's command line is written ",,".
    modules = f"{os.path.join(base, 'vmlinuz')} {dom0.replace(',', ',,')},{initrd}"
    return (
        ["qemu-system-x86_64"]
        + machine
        + ["-m", "2048", "-smp", "2", "-nographic", "-monitor", "none", "-serial", "stdio", "-no-reboot"]
        + ["-kernel", os.path.join(base, "xen.elf"), "-append", XEN_CMDLINE, "-initrd", modules]
    )


def boot(cmd: List[str], log_path: str, deadline: float) -> Run:
    """Run QEMU until it exits or the deadline passes; the parsed log."""
    run = Run(started=time.monotonic())
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        pending = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    run.timed_out = True
                    break
                ready, _, _ = select.select([fd], [], [], min(left, 1.0))
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                now = time.monotonic()
                for raw in lines:
                    run.feed(raw.decode("utf-8", "replace").replace("\r", ""), now)
            if pending:
                run.feed(pending.decode("utf-8", "replace"), time.monotonic())
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            proc.stdout.close()
    run.exit_status = proc.returncode  # type: ignore[attr-defined]
    return run


# -- the report ----------------------------------------------------------------

_WORDS = {"PASS": "OK", "FAIL": "FAIL", "ERROR": "ERROR", "SKIP": "SKIPPED", "XFAIL": "TODO", "UXPASS": "SUCCESS!?!"}


def report(run: Run, accel: str, timings: Dict[str, float], log_path: str) -> bool:
    """Print the trial-style summary; whether the run passed."""
    say("")
    say(f"Real Xen under QEMU ({accel}): {run.xen or 'no xl info'}")
    if run.versions:
        say(f"dom0: {run.versions}")
    for t in run.tests:
        say(f"{t.test_id} ... [{_WORDS.get(t.status, t.status)}] ({t.seconds:.1f} s)")
    problems: List[str] = []
    for t in run.tests:
        if t.status in ("FAIL", "ERROR", "UXPASS"):
            say("=" * 79)
            say(f"[{_WORDS[t.status]}]")
            for line in t.traceback:
                say(line)
            say(t.test_id)
    skips = [t for t in run.tests if t.status == "SKIP"]
    if skips:
        say("=" * 79)
        say("[SKIPPED]")
        for t in skips:
            say(f"{t.test_id}: {t.detail}")
    if run.timed_out:
        problems.append(f"timed out after {timings['limit']:.0f} s: QEMU killed")
    elif run.done_rc is None:
        problems.append("dom0 never finished the tests (crash?)" + (f": {run.crash}" if run.crash else ""))
    if run.toolstack_failed:
        problems.append(f"dom0 toolstack failed: {run.toolstack_failed}")
    if run.done_rc not in (None, 0):
        problems.append(f"the tests in dom0 ended with rc={run.done_rc}" + (" (dom0 timeout)" if run.done_rc == 124 else ""))
    if not run.tests:
        problems.append("no test reported a result")
    counts: Dict[str, int] = {}
    for t in run.tests:
        counts[t.status] = counts.get(t.status, 0) + 1
    say("-" * 79)
    ran = run.summary["seconds"] if run.summary else (run.done_at or 0) - (run.toolstack or 0)
    boot = run.toolstack
    boot_text = f"QEMU start to dom0 toolstack ready {boot:.1f}s" if boot is not None else "dom0 toolstack never ready"
    times = ", ".join(f"{name} {secs:.1f}s" for name, secs in timings.items() if name != "limit")
    plural = "" if len(run.tests) == 1 else "s"
    say(f"Ran {len(run.tests)} test{plural} in {ran:.1f}s on real Xen ({boot_text}; {times})")
    if problems:
        say("last lines of the serial log:")
        for line in _tail(log_path, 40):
            say("  | " + line)
    for p in problems:
        say(f"PROBLEM: {p}")
    say(f"serial log: {log_path}")
    passed = not problems and all(t.status in ("PASS", "SKIP", "XFAIL") for t in run.tests)
    word = {"PASS": "successes", "FAIL": "failures", "ERROR": "errors", "SKIP": "skips", "XFAIL": "expectedFailures", "UXPASS": "unexpectedSuccesses"}
    tally = ", ".join(sorted(f"{word[k]}={v}" for k, v in counts.items()))
    say(f"{'PASSED' if passed else 'FAILED'} ({tally or 'nothing ran'})")
    return passed


def _tail(path: str, count: int) -> List[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").replace("\r", "").splitlines()
    except OSError:
        return []
    return lines[-count:]


def record_sequences(run: Run) -> None:
    with open(SEQUENCES) as f:
        data = json.load(f)
    data["scenarios"].update(run.sequences)
    with open(SEQUENCES, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    say(f"recorded {len(run.sequences)} scenario sequences into {SEQUENCES}")


# -- main ----------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=int, default=2400, help="outer limit for the whole run, seconds")
    parser.add_argument("--tests", nargs="*", default=[], help="trial names to run in dom0 (default: every module of tests/realxen that runs in dom0)")
    parser.add_argument("--record", action="store_true", help="write the recorded sequences to tests/realxen/sequences.json")
    parser.add_argument("--cache", default=os.environ.get("TXLIBXL_XEN_CACHE", os.path.join(CHECKOUT, ".cache", "xen")))
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--keep-runs", type=int, default=5, help="serial logs of earlier runs to keep")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    deadline = t0 + args.timeout
    # SIGTERM (a CI job cancelled) unwinds like ^C, so QEMU is killed on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    reason = missing_prerequisite()
    if reason is None:
        main_mirror, security_mirror = apt_mirrors()
        if not (main_mirror and security_mirror):
            reason = "no Debian bookworm mirror in the apt sources (set DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR)"
    if reason is not None:
        say(f"Real Xen tests: SKIPPED ({reason})")
        return 0

    os.makedirs(os.path.join(args.cache, "runs"), exist_ok=True)
    timings: Dict[str, float] = {"limit": float(args.timeout)}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(args.cache, "runs", f"{stamp}-{os.getpid()}")
    os.makedirs(run_dir)
    lock = open(os.path.join(args.cache, "lock"), "w")
    if _locked(lock):
        say(f"waiting for the real-Xen cache lock ({args.cache})")
    fcntl.flock(lock, fcntl.LOCK_EX)

    key = image_key()
    base = os.path.join(args.cache, f"base-{key}")
    if not os.path.exists(os.path.join(base, "dom0-base.cpio")):
        for stale in glob.glob(os.path.join(args.cache, "base-*")):
            shutil.rmtree(stale, ignore_errors=True)
        say(f"building the base image {base} (from {main_mirror})")
        started = time.monotonic()
        env = dict(os.environ, DEBIAN_MIRROR=main_mirror, DEBIAN_SECURITY_MIRROR=security_mirror)
        if subprocess.call([os.path.join(HERE, "build-image.sh"), base], env=env) != 0:
            say("FAILED (building the base image failed; see above)")
            return 1
        timings["image build"] = time.monotonic() - started
    else:
        say(f"using the cached base image {base}")
    with open(os.path.join(base, "manifest.txt")) as f:
        say("image: " + "; ".join(line.strip() for line in f if line.strip()))

    started = time.monotonic()
    overlay = os.path.join(run_dir, "overlay.cpio")
    if subprocess.call([os.path.join(HERE, "build-overlay.sh"), base, CHECKOUT, overlay]) != 0:
        say("FAILED (building the overlay failed; see above)")
        return 1
    initrd = os.path.join(run_dir, "initrd.cpio")
    with open(initrd, "wb") as out:
        for part in (os.path.join(base, "dom0-base.cpio"), overlay):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    timings["overlay"] = time.monotonic() - started

    accel = args.accel
    if accel == "auto":
        accel = "kvm" if has_hardware_virtualisation() else "tcg"
    log_path = os.path.join(run_dir, "serial.log")
    # dom0 gets the time that is left, minus a margin to power off.
    inner = max(60, int(deadline - time.monotonic()) - 60)
    started = time.monotonic()
    say(f"booting Xen + dom0 under QEMU ({accel}); serial log {log_path}")
    run = boot(qemu_command(accel, base, initrd, inner, args.tests), log_path, deadline)
    if accel == "kvm" and run.toolstack is None and not run.timed_out:
        say("KVM did not boot Xen; falling back to TCG")
        accel = "tcg"
        inner = max(60, int(deadline - time.monotonic()) - 60)
        started = time.monotonic()
        run = boot(qemu_command(accel, base, initrd, inner, args.tests), log_path, deadline)
    timings["qemu"] = time.monotonic() - started
    timings["total"] = time.monotonic() - t0
    os.unlink(initrd)
    with open(os.path.join(run_dir, "sequences.json"), "w") as f:
        json.dump(run.sequences, f, indent=2)
    _prune(os.path.join(args.cache, "runs"), args.keep_runs)
    passed = report(run, accel, timings, log_path)
    if args.record and run.sequences:
        record_sequences(run)
    return 0 if passed else 1


def _locked(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def _prune(runs: str, keep: int) -> None:
    for old in sorted(os.listdir(runs))[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(runs, old), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
