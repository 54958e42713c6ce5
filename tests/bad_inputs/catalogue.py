"""The bad-input catalogue: malformed inputs and faults for every g4convert command, each run with the binary
under test and checked against the error contract (docs/safety.md):

  - the exit code is the expected one (2 an error; 1 inspect's "the input has problems"; 0 where the input is
    odd but legal), never a signal, within the time limit;
  - stderr holds only "g4convert: warning|note: ..." lines, and on exit 2 exactly one "g4convert: error: ..."
    line, the last;
  - no input changed (every input tree hashed before and after, FIFOs and links by type and target);
  - on failure nothing is left behind: the case's directory, outputs and their temp siblings included, is
    exactly as before; on success each declared output exists.

Usage: catalogue.py BINARY [-k SUBSTRING] [--list] [--keep] [-j N]. Prints one line per failing case and
"N passed, M failed" last; exits 1 when any case failed. Standard library only; inputs are built from the
bundled tiny checkpoints in testdata/ (copied, never touched) in a temp directory.
"""
import argparse
import concurrent.futures
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

ERROR = "g4convert: error: "
ALLOWED_PREFIXES = ("g4convert: warning: ", "g4convert: note: ")
BIG_FILE = 64 << 20  # files above this are compared by size and mtime, not content


@dataclass
class Run:
    """One command of a case. Paths are absolute; the command runs in the case directory."""
    args: list
    expect: tuple = (2,)              # allowed exit codes
    inputs: list = field(default_factory=list)    # trees that must not change
    outputs: list = field(default_factory=list)   # must exist on success; on failure the case dir is unchanged
    stdout: str = None                # a path to send stdout to (e.g. /dev/full); default: a pipe
    timeout: float = 20.0
    check: object = None              # extra check: fn(case_dir, proc) -> None or a reason
    absent: list = field(default_factory=list)    # paths that must not exist afterwards whatever the exit code


@dataclass
class Case:
    name: str
    build: object                     # fn(ctx) -> Run
    skip: str = None                  # why the case cannot run here (reported, never silently dropped)


class Skip(Exception):
    """Raised by a case's build when this machine cannot set the fault up (e.g. no mount privilege)."""


class Context:
    """What a case's build gets: its own directory and copies of the base inputs."""

    def __init__(self, case_dir, base, binary):
        self.dir = case_dir
        self.base = base
        self.binary = binary
        self.cleanups = []

    def copy(self, base_name, as_name=None):
        dst = self.dir / (as_name or base_name)
        shutil.copytree(self.base / base_name, dst, symlinks=True)
        return dst

    def path(self, *parts):
        return self.dir.joinpath(*parts)

    def write(self, rel, data):
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p

    def mount_tmpfs(self, rel, size, options=""):
        """A small tmpfs at `rel` (for full-disk and read-only faults); Skip where mounting is not allowed."""
        p = self.dir / rel
        p.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + ("," + options if options else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'})")
        self.cleanups.append(lambda: subprocess.run(["umount", "-l", str(p)], capture_output=True))
        return p


def tree_hash(path):
    """A digest of a file tree without following links or opening anything but regular files."""
    h = hashlib.sha256()
    path = Path(path)

    def one(p, rel):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            h.update(f"{rel}:absent\n".encode())
            return
        mode = st.st_mode
        h.update(f"{rel}:{stat.S_IFMT(mode)}:{stat.S_IMODE(mode)}\n".encode())
        if stat.S_ISLNK(mode):
            h.update(os.readlink(p).encode())
        elif stat.S_ISREG(mode) and st.st_size > BIG_FILE:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())  # the sparse huge files some cases make
        elif stat.S_ISREG(mode):
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        elif stat.S_ISDIR(mode):
            for name in sorted(os.listdir(p)):
                one(p / name, f"{rel}/{name}")

    one(path, ".")
    return h.hexdigest()


def check_stderr(rc, stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith(ERROR)]
    other = [l for l in lines if not l.startswith(ERROR) and not l.startswith(ALLOWED_PREFIXES)]
    if other:
        return f"stray stderr line: {other[0][:160]!r}"
    if rc == 2:
        if len(errors) != 1:
            return f"{len(errors)} error lines on stderr (want exactly 1)" + (f": {errors[0][:120]!r}…" if errors else "")
        if lines[-1] != errors[0]:
            return "the error line is not the last line on stderr"
    elif errors:
        return f"exit {rc} but an error line: {errors[0][:160]!r}"
    return None


def run_case(case, work, base, binary):
    """Returns (status, reason, seconds): status 'pass', 'fail' or 'skip'."""
    if case.skip:
        return "skip", case.skip, 0.0
    case_dir = work / "cases" / case.name
    case_dir.mkdir(parents=True)
    ctx = Context(case_dir, base, binary)
    start = time.monotonic()
    try:
        try:
            run = case.build(ctx)
        except Skip as e:
            return "skip", str(e), 0.0
        except Exception as e:  # a broken generator is a failing case, not a crash of the catalogue
            return "fail", f"setup failed: {type(e).__name__}: {e}", 0.0
        return _execute(run, case_dir, binary, start)
    finally:
        for c in reversed(ctx.cleanups):
            c()


def _execute(run, case_dir, binary, start):
    input_hashes = {p: tree_hash(p) for p in run.inputs}
    before = tree_hash(case_dir)
    outputs_before = {p: os.path.lexists(p) for p in run.outputs}
    stdout = open(run.stdout, "wb") if run.stdout else subprocess.PIPE
    try:
        proc = subprocess.Popen([str(binary)] + [str(a) for a in run.args], cwd=case_dir, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=run.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "fail", f"timed out after {run.timeout:.0f}s", time.monotonic() - start
    finally:
        if run.stdout:
            stdout.close()
    seconds = time.monotonic() - start
    rc = proc.returncode
    err = err.decode(errors="replace")
    # The gravest first: code that ran, then a crash, then the contract.
    reason = run.check(case_dir, proc) if run.check else None
    if reason:
        return "fail", reason, seconds
    if rc < 0:
        return "fail", f"killed by signal {signal.Signals(-rc).name}", seconds
    if rc not in run.expect:
        first_error = next((l for l in err.splitlines() if l.startswith(ERROR)), "")
        tail = (first_error or (err.strip().splitlines() or [""])[-1])[:200]
        return "fail", f"exit {rc}, want {'/'.join(map(str, run.expect))}" + (f" ({tail})" if tail else ""), seconds
    reason = check_stderr(rc, err)
    if reason:
        return "fail", reason, seconds
    unchanged = tree_hash(case_dir) == before
    if not unchanged:
        for p, h in input_hashes.items():
            if tree_hash(p) != h:
                return "fail", f"input changed: {os.path.relpath(p, case_dir)}", seconds
    for p in run.absent:
        if os.path.lexists(p):
            return "fail", f"{os.path.relpath(p, case_dir)} exists (it must not)", seconds
    if rc == 0:
        for p in run.outputs:
            if not os.path.lexists(p):
                return "fail", f"exit 0 but no output {os.path.relpath(p, case_dir)}", seconds
    elif not unchanged:
        made = [os.path.relpath(p, case_dir) for p in run.outputs if os.path.lexists(p) and not outputs_before[p]]
        return "fail", "failed but left changes behind" + (f" (output {made[0]} exists)" if made else
                                                            " (a temp sibling or a changed file)"), seconds
    return "pass", "", seconds


def make_base(work, binary):
    """The base inputs every case copies: bundled tiny checkpoints, a sharded one and hf2mcore outputs."""
    base = work / "base"
    base.mkdir()
    for name, src in [("e4b", "tiny-e4b"), ("moe", "tiny-26b-a4b"), ("e2b", "tiny-e2b")]:
        shutil.copytree(ROOT / "testdata" / src, base / name)
    steps = [
        ["synth", "--preset", "tiny-e4b", "--max-shard-size", "200KB", "--out", base / "sharded"],
        ["hf2mcore", "--hf", base / "e4b", "--out", base / "mc"],
        ["hf2mcore", "--hf", base / "moe", "--out", base / "mc-moe"],
        ["hf2mcore", "--text-mode", "--hf", base / "e4b", "--out", base / "mc-text"],  # Megatron-Bridge's text mode
    ]
    for step in steps:
        r = subprocess.run([str(binary), "--quiet"] + [str(a) for a in step], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"catalogue: setup step {' '.join(map(str, step[:1]))} failed: {r.stderr.strip()}")
    if not (base / "sharded" / "model.safetensors.index.json").exists():
        raise SystemExit("catalogue: synth --max-shard-size 200KB wrote no index (the sharded base is needed)")
    (base / "input.json").write_text('{"input_ids": [[2, 17, 99, 3, 55, 23]]}\n')
    return base


def all_cases():
    import cases_hf
    import cases_mcore
    import cases_outputs
    cases = cases_hf.cases() + cases_mcore.cases() + cases_outputs.cases()
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SystemExit(f"catalogue: duplicate case names: {sorted(dupes)}")
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("-k", default="", help="run only cases whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-j", type=int, default=4, help="cases run at once (default 4)")
    ap.add_argument("--times", type=int, default=0, metavar="N", help="also print the N slowest cases")
    args = ap.parse_args()
    cases = [c for c in all_cases() if args.k in c.name]
    if args.list:
        for c in cases:
            print(c.name)
        return 0
    binary = Path(args.binary).resolve()
    work = Path(tempfile.mkdtemp(prefix="g4-bad-inputs-"))
    start = time.monotonic()
    passed = failed = skipped = 0
    times = []
    try:
        base = make_base(work, binary)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.j)) as pool:
            futures = [(c, pool.submit(run_case, c, work, base, binary)) for c in cases]
            for case, fut in futures:
                status, reason, seconds = fut.result()
                times.append((seconds, case.name))
                if status == "pass":
                    passed += 1
                elif status == "skip":
                    skipped += 1
                    print(f"SKIP {case.name}: {reason}")
                else:
                    failed += 1
                    print(f"FAIL {case.name}: {reason}")
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for seconds, name in sorted(times, reverse=True)[:args.times]:
        print(f"  {seconds:6.2f}s  {name}")
    print(f"({len(cases)} cases, {skipped} skipped, {time.monotonic() - start:.0f}s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
