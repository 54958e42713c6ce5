"""Catalogue cases for outputs and faults: outputs that would land inside or over an input, existing outputs and
--force, read-only and full file systems, leftovers of killed runs, forward's input files, synth's options,
thread counts, usage errors, and a stdout that cannot be written (presets, version, inspect --json)."""
import json
import os

from catalogue import Case, Run

ITER = "iter_0000000"


def _hf(ctx):
    return ctx.copy("e4b", "hf")


def _mc(ctx):
    return ctx.copy("mc", "mc")


# --- outputs inside, over or around an input: refused before any work, the input untouched.

def overlap_cases():
    def hf2mcore(out_rel, force, input_rel="hf"):
        def build(ctx):
            hf = ctx.copy("e4b", input_rel)
            out = ctx.path(out_rel)
            return Run(["hf2mcore", "--hf", hf, "--out", out] + (["--force"] if force else []), (2,),
                       inputs=[ctx.dir], outputs=[out])
        return build

    def mcore2hf(out_rel, mcore_rel="mc", force=True):
        def build(ctx):
            mc = _mc(ctx)
            out = ctx.path(out_rel)
            return Run(["mcore2hf", "--mcore", ctx.path(mcore_rel), "--out", out] + (["--force"] if force else []),
                       (2,), inputs=[mc], outputs=[out])
        return build

    def via_symlink(ctx):
        hf = _hf(ctx)
        os.symlink("hf", ctx.path("alias"))
        return Run(["hf2mcore", "--hf", ctx.path("alias"), "--out", hf, "--force"], (2,), inputs=[hf], outputs=[hf])

    def via_dotdot(ctx):
        hf = _hf(ctx)
        ctx.path("sub").mkdir()
        return Run(["hf2mcore", "--hf", hf, "--out", ctx.path("sub", "..", "hf"), "--force"], (2,), inputs=[hf])

    def out_is_hf_checkpoint(ctx):
        """--out names an HF checkpoint: with --force hf2mcore may replace only an earlier Megatron output."""
        hf = _hf(ctx)
        other = ctx.copy("e4b", "other")
        return Run(["hf2mcore", "--hf", hf, "--out", other, "--force"], (2,), inputs=[hf], outputs=[other])

    def reference_is_out(ctx):
        mc = _mc(ctx)
        ref = _hf(ctx)
        return Run(["mcore2hf", "--mcore", mc, "--reference-hf", ref, "--out", ref, "--force"], (2,), inputs=[mc, ref])

    def roundtrip_keep(rel, make_existing):
        def build(ctx):
            hf = _hf(ctx)
            keep = ctx.path(rel)
            if make_existing:
                keep.mkdir()
                (keep / "notes.txt").write_text("mine\n")
            return Run(["roundtrip", "--hf", hf, "--keep", keep], (2,), inputs=[ctx.dir], outputs=[keep])
        return build

    def forward_onto(target_rel, flag, extra=()):
        def build(ctx):
            hf = _hf(ctx)
            inp = ctx.path("input.json")
            inp.write_text('{"input_ids": [[2, 17, 99]]}')
            return Run(["forward", "--hf", hf, "--input", inp, flag, ctx.path(target_rel), *extra], (2,),
                       inputs=[hf, inp])
        return build

    def verify_onto(target_rel, flag):
        def build(ctx):
            hf = _hf(ctx)
            mc = _mc(ctx)
            return Run(["verify", "--hf", hf, "--mcore", mc, flag, ctx.path(target_rel)], (2,), inputs=[hf, mc])
        return build

    def forward_two_outputs_same_file(ctx):
        hf = _hf(ctx)
        out = ctx.path("dump.safetensors")
        return Run(["forward", "--hf", hf, "--ids", "2,17", "--logits", out, "--hidden", out], (2,), inputs=[hf],
                   outputs=[out])

    return [
        Case("hf2mcore/out-is-the-input-with-force", hf2mcore("hf", True)),
        Case("hf2mcore/out-is-the-input", hf2mcore("hf", False)),
        Case("hf2mcore/out-is-parent-of-input-with-force", hf2mcore("p", True, input_rel="p/hf")),
        Case("hf2mcore/out-inside-input", hf2mcore("hf/sub", False)),
        Case("hf2mcore/out-inside-input-with-force", hf2mcore("hf/sub", True)),
        Case("hf2mcore/out-is-input-via-symlink", via_symlink),
        Case("hf2mcore/out-is-input-via-dotdot", via_dotdot),
        Case("hf2mcore/out-is-an-hf-checkpoint-with-force", out_is_hf_checkpoint),
        Case("mcore2hf/out-is-the-input-with-force", mcore2hf("mc")),
        Case("mcore2hf/out-is-the-iteration-dir-with-force", mcore2hf(f"mc/{ITER}")),
        Case("mcore2hf/out-is-parent-of-iteration-input", mcore2hf("mc", mcore_rel=f"mc/{ITER}")),
        Case("mcore2hf/out-inside-input", mcore2hf("mc/hf", force=False)),
        Case("mcore2hf/out-is-the-reference-hf", reference_is_out),
        Case("roundtrip/keep-is-the-input", roundtrip_keep("hf", False)),
        Case("roundtrip/keep-inside-the-input", roundtrip_keep("hf/keep", False)),
        Case("roundtrip/keep-over-existing-foreign-dir", roundtrip_keep("keep", True)),
        Case("forward/logits-onto-model-file", forward_onto("hf/model.safetensors", "--logits")),
        Case("forward/logits-onto-model-file-with-force", forward_onto("hf/model.safetensors", "--logits", ["--force"])),
        Case("forward/hidden-onto-config", forward_onto("hf/config.json", "--hidden", ["--force"])),
        Case("forward/routing-onto-input-json", forward_onto("input.json", "--routing", ["--force"])),
        Case("forward/logits-onto-the-checkpoint-dir", forward_onto("hf", "--logits", ["--force"])),
        Case("forward/logits-and-hidden-same-file", forward_two_outputs_same_file),
        Case("verify/report-onto-metadata", verify_onto(f"mc/{ITER}/.metadata", "--report")),
        Case("verify/plot-onto-hf-config", verify_onto("hf/config.json", "--plot")),
        Case("verify/report-onto-the-mcore-dir", verify_onto("mc", "--report")),
        Case("verify/report-in-missing-dir", verify_onto("nowhere/report.json", "--report")),
    ]


# --- existing outputs and --force.

def force_cases():
    def existing(cmd, force, kind, expect):
        def build(ctx):
            out = ctx.path("out")
            if kind == "earlier-output":
                ctx.copy("mc" if cmd == "hf2mcore" else "e4b", "out")
            elif kind == "foreign-dir":
                out.mkdir()
                (out / "thesis.tex").write_text("years of work\n")
            elif kind == "file":
                out.write_text("a file\n")
            inputs = []
            if cmd == "synth":
                args = ["synth", "--preset", "tiny-e4b", "--out", out]
            elif cmd == "hf2mcore":
                hf = _hf(ctx)
                inputs = [hf]
                args = ["hf2mcore", "--hf", hf, "--out", out]
            else:
                mc = _mc(ctx)
                inputs = [mc]
                args = ["mcore2hf", "--mcore", mc, "--out", out]
            return Run(args + (["--force"] if force else []), expect, inputs=inputs, outputs=[out])
        return build

    cases = []
    for cmd in ("synth", "hf2mcore", "mcore2hf"):
        cases += [
            Case(f"{cmd}/out-exists-without-force", existing(cmd, False, "earlier-output", (2,))),
            Case(f"{cmd}/out-is-foreign-dir-with-force", existing(cmd, True, "foreign-dir", (2,))),
            Case(f"{cmd}/out-is-a-file-with-force", existing(cmd, True, "file", (2,))),
        ]
    cases += [Case("hf2mcore/out-earlier-output-with-force-is-replaced", existing("hf2mcore", True, "earlier-output", (0,))),
              Case("synth/out-earlier-output-with-force-is-replaced", existing("synth", True, "earlier-output", (0,)))]

    def stale_temp(ctx):
        """A temp sibling left by a killed run (its process gone, its lock free) is swept by the next run."""
        hf = _hf(ctx)
        pid = next(p for p in range(999_999, 10**7) if not os.path.exists(f"/proc/{p}"))  # a process that is gone
        stale = ctx.path(f".out.g4tmp-{pid}")
        stale.mkdir()
        (stale / "__0_0.distcp").write_bytes(b"half written")
        out = ctx.path("out")
        return Run(["hf2mcore", "--hf", hf, "--out", out], (0,), inputs=[hf], outputs=[out], absent=[stale])
    cases.append(Case("hf2mcore/stale-temp-of-killed-run-is-swept", stale_temp))
    return cases


# --- file systems that refuse the write.

def filesystem_cases():
    def full_disk(cmd):
        def build(ctx):
            disk = ctx.mount_tmpfs("disk", "128k")
            out = disk / "out"
            if cmd == "hf2mcore":
                hf = _hf(ctx)
                return Run(["hf2mcore", "--hf", hf, "--out", out], (2,), inputs=[hf], outputs=[out])
            if cmd == "mcore2hf":
                mc = _mc(ctx)
                return Run(["mcore2hf", "--mcore", mc, "--out", out], (2,), inputs=[mc], outputs=[out])
            if cmd == "synth":
                return Run(["synth", "--preset", "tiny-e4b", "--out", out], (2,), outputs=[out])
            if cmd == "roundtrip":
                hf = _hf(ctx)
                return Run(["roundtrip", "--hf", hf, "--keep", out], (2,), inputs=[hf], outputs=[out])
            if cmd == "forward":
                hf = _hf(ctx)
                (disk / "filler").write_bytes(b"\x00" * (124 << 10))
                return Run(["forward", "--hf", hf, "--ids", ",".join(["2"] * 64), "--hidden", disk / "h.safetensors"],
                           (2,), inputs=[hf], outputs=[disk / "h.safetensors"])
            raise KeyError(cmd)
        return build

    def read_only(cmd):
        def build(ctx):
            ro = ctx.mount_tmpfs("ro", "1m", "ro")
            out = ro / "out"
            if cmd == "hf2mcore":
                hf = _hf(ctx)
                return Run(["hf2mcore", "--hf", hf, "--out", out], (2,), inputs=[hf], outputs=[out])
            if cmd == "mcore2hf":
                mc = _mc(ctx)
                return Run(["mcore2hf", "--mcore", mc, "--out", out], (2,), inputs=[mc], outputs=[out])
            if cmd == "synth":
                return Run(["synth", "--preset", "tiny-e4b", "--out", out], (2,), outputs=[out])
            if cmd == "verify":
                hf, mc = _hf(ctx), _mc(ctx)
                return Run(["verify", "--hf", hf, "--mcore", mc, "--report", ro / "r.json"], (2,), inputs=[hf, mc])
            raise KeyError(cmd)
        return build

    def out_parent_missing(ctx):
        hf = _hf(ctx)
        return Run(["hf2mcore", "--hf", hf, "--out", ctx.path("no", "such", "dir", "out")], (0, 2), inputs=[hf])

    def dev_full_logits(ctx):
        hf = _hf(ctx)
        return Run(["forward", "--hf", hf, "--ids", "2,17", "--logits", "/dev/full", "--force"], (2,), inputs=[hf])

    cases = [Case(f"{c}/out-on-full-disk", full_disk(c)) for c in ("hf2mcore", "mcore2hf", "synth", "roundtrip", "forward")]
    cases += [Case(f"{c}/out-on-read-only-fs", read_only(c)) for c in ("hf2mcore", "mcore2hf", "synth", "verify")]
    cases += [Case("hf2mcore/out-parent-missing", out_parent_missing),
              Case("forward/logits-onto-dev-full", dev_full_logits)]
    return cases


# --- forward's (and verify's) input.

def _input_case(data, cmd="forward", expect=(2,), timeout=20.0):
    def build(ctx):
        hf = _hf(ctx)
        inp = ctx.path("input.json")
        if callable(data):
            data(inp)
        else:
            inp.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
        if cmd == "forward":
            args = ["forward", "--hf", hf, "--input", inp]
            inputs = [hf]
        else:
            mc = _mc(ctx)
            args = ["verify", "--hf", hf, "--mcore", mc, "--input", inp]
            inputs = [hf, mc]
        return Run(args, expect, inputs=inputs + ([inp] if os.path.lexists(inp) else []), timeout=timeout)
    return build


def _fifo(p):
    os.mkfifo(p)


def _dir(p):
    os.mkdir(p)


def _zero(p):
    os.symlink("/dev/zero", p)


def _loop(p):
    os.symlink(p.name + ".2", p)
    os.symlink(p.name, p.parent / (p.name + ".2"))


def _huge_tokens(p):
    """200,000 tokens in one row: more than max_position_embeddings (131072)."""
    p.write_text('{"input_ids": [[' + ",".join(["2"] * 200_000) + "]]}")


FORWARD_INPUTS = {
    "input-missing": lambda p: None,
    "input-empty": b"",
    "input-garbage": b"\x00{garbage",
    "input-not-object": [1, 2, 3],
    "input-no-input-ids": {"attention_mask": [[1, 1]]},
    "input-ids-empty-list": {"input_ids": []},
    "input-ids-empty-row": {"input_ids": [[]]},
    "input-ids-negative": {"input_ids": [[2, -5, 99]]},
    "input-ids-past-vocab": {"input_ids": [[2, 128, 99]]},
    "input-ids-2^63": {"input_ids": [[2, 2**63, 99]]},
    "input-ids-float": {"input_ids": [[2, 1.5, 99]]},
    "input-ids-string": {"input_ids": [[2, "17", 99]]},
    "input-ids-null": {"input_ids": [[2, None, 99]]},
    "input-ids-ragged-rows": {"input_ids": [[2, 17, 99], [2]]},
    "input-ids-deep-nesting-100000": b'{"input_ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "input-deep-nesting-in-other-key": b'{"input_ids": [[2, 17]], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "input-mask-wrong-length": {"input_ids": [[2, 17, 99]], "attention_mask": [[1, 1]]},
    "input-mask-values-2": {"input_ids": [[2, 17, 99]], "attention_mask": [[1, 2, 1]]},
    "input-mask-all-zero": {"input_ids": [[2, 17, 99]], "attention_mask": [[0, 0, 0]]},
    "input-mm-token-types-7": {"input_ids": [[2, 17, 99]], "mm_token_type_ids": [[0, 7, 0]]},
    "input-fifo": _fifo,
    "input-directory": _dir,
    "input-dev-zero": _zero,
    "input-symlink-loop": _loop,
    "input-200000-tokens": _huge_tokens,
}


def input_cases():
    cases = [Case(f"forward/{name}", _input_case(data)) for name, data in FORWARD_INPUTS.items()]
    for name in ("input-garbage", "input-ids-past-vocab", "input-ids-deep-nesting-100000", "input-fifo",
                 "input-200000-tokens"):
        cases.append(Case(f"verify/{name}", _input_case(FORWARD_INPUTS[name], cmd="verify")))

    def ids(text, cmd="forward"):
        def build(ctx):
            hf = _hf(ctx)
            if cmd == "forward":
                return Run(["forward", "--hf", hf, "--ids", text], (2,), inputs=[hf])
            mc = _mc(ctx)
            return Run(["verify", "--hf", hf, "--mcore", mc, "--ids", text], (2,), inputs=[hf, mc])
        return build
    for name, text in (("empty", ""), ("double-comma", "2,,17"), ("letters", "2,abc"), ("negative", "2,-1"),
                       ("overflow", "99999999999999999999"), ("past-vocab", "2,500"), ("spaces-only", "   ")):
        cases.append(Case(f"forward/ids-{name}", ids(text)))
    cases.append(Case("verify/ids-past-vocab", ids("2,500", cmd="verify")))
    return cases


# --- synth's options, thread counts, usage errors, unwritable stdout.

def cli_cases():
    def synth(*extra, expect=(2,)):
        def build(ctx):
            out = ctx.path("out")
            return Run(["synth", "--preset", "tiny-e4b", "--out", out, *extra], expect, outputs=[out])
        return build

    def simple(args, expect=(2,), stdout=None):
        return lambda ctx: Run(args, expect, stdout=stdout)

    def threads(cmd, j):
        def build(ctx):
            if cmd == "hf2mcore":
                hf, out = _hf(ctx), ctx.path("out")
                return Run(["-j", j, "hf2mcore", "--hf", hf, "--out", out], (0,), inputs=[hf], outputs=[out])
            if cmd == "mcore2hf":
                mc, out = _mc(ctx), ctx.path("out")
                return Run(["-j", j, "mcore2hf", "--mcore", mc, "--out", out], (0,), inputs=[mc], outputs=[out])
            if cmd == "synth":
                out = ctx.path("out")
                return Run(["-j", j, "synth", "--preset", "tiny-e4b", "--out", out], (0,), outputs=[out])
            if cmd == "inspect":
                hf = _hf(ctx)
                return Run(["-j", j, "inspect", "--scan", hf], (0,), inputs=[hf])
            if cmd == "forward":
                hf = _hf(ctx)
                return Run(["-j", j, "forward", "--hf", hf, "--ids", "2,17"], (0,), inputs=[hf])
            if cmd == "roundtrip":
                hf = _hf(ctx)
                return Run(["-j", j, "roundtrip", "--hf", hf], (0,), inputs=[hf])
            hf, mc = _hf(ctx), _mc(ctx)
            return Run(["-j", j, "verify", "--hf", hf, "--mcore", mc], (0,), inputs=[hf, mc])
        return build

    cases = [
        Case("synth/layers-zero", synth("--layers", "0", expect=(0, 2))),
        Case("synth/layers-negative", synth("--layers", "-1")),
        Case("synth/layers-1000000", synth("--layers", "1000000")),
        Case("synth/layers-2^40", synth("--layers", str(2**40))),
        Case("synth/seed-not-a-number", synth("--seed", "x")),
        Case("synth/max-shard-size-garbage", synth("--max-shard-size", "5XB")),
        Case("synth/max-shard-size-zero", synth("--max-shard-size", "0")),
        Case("synth/max-shard-size-negative", synth("--max-shard-size", "-1GB")),
        Case("synth/max-shard-size-overflow", synth("--max-shard-size", "99999999999999999999GB")),
        Case("synth/unknown-preset", synth("--preset", "gpt5")),
        Case("mcore2hf/max-shard-size-garbage", lambda ctx: Run(
            ["mcore2hf", "--mcore", _mc(ctx), "--out", ctx.path("out"), "--max-shard-size", "lots"], (2,),
            inputs=[ctx.path("mc")], outputs=[ctx.path("out")])),
        Case("usage/unknown-command", simple(["frobnicate"])),
        Case("usage/no-command", simple([])),
        Case("usage/missing-required-option", simple(["hf2mcore", "--hf", "x"])),
        Case("usage/bad-dtype", simple(["forward", "--hf", "x", "--ids", "2", "--dtype", "fp8"])),
        Case("usage/threads-not-a-number", simple(["-j", "abc", "presets"])),
        Case("usage/threads-negative", simple(["-j", "-1", "presets"])),
        Case("version/extra-argument", simple(["version", "extra"])),
        Case("presets/extra-argument", simple(["presets", "extra"])),
        Case("presets/stdout-full", simple(["presets", "--json"], stdout="/dev/full")),
        Case("version/stdout-full", simple(["version"], stdout="/dev/full")),
        Case("inspect/stdout-full", lambda ctx: Run(["inspect", "--json", _hf(ctx)], (2,), inputs=[ctx.path("hf")],
                                                    stdout="/dev/full")),
        Case("presets/threads-100000", simple(["-j", "100000", "presets"], expect=(0,))),
        Case("version/threads-100000", simple(["-j", "100000", "version"], expect=(0,))),
    ]
    for cmd in ("hf2mcore", "mcore2hf", "synth", "inspect", "forward", "roundtrip", "verify"):
        cases.append(Case(f"{cmd}/threads-100000", threads(cmd, "100000")))
    cases.append(Case("hf2mcore/threads-2^32", threads("hf2mcore", str(2**32))))
    return cases


def cases():
    return overlap_cases() + force_cases() + filesystem_cases() + input_cases() + cli_cases()
