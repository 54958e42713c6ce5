#!/usr/bin/env python3
"""Lists the dataclass fields of Megatron-Bridge 0.6.2's four Gemma 4 providers, with their class defaults as
MB's run_config.yaml would serialise them, by reading the sources with `ast` (nothing is imported or run).

    python3 testdata/gen/gen_mb_provider_fields.py --mb $(bin/pyenv --mcore-0.19) --mcore $(bin/pyenv --mcore-0.19)
    (bin/pyenv's 0.19 tree holds the megatron-core 0.19.2 and Megatron-Bridge 0.6.2 sources)

Writes testdata/gen/mb-0.6.2-provider-fields.json (read by python/tests/test_run_config_fields.py) and
src/convert/mb_provider_fields.inc (the declarative table run_config_yaml writes the model section from).
Defaults are the class defaults before finalize(): callables, dtypes, enums and partials become the
`_target_` nodes megatron-core's YAML representers write; a default this script cannot evaluate is null and
listed in the JSON under "unevaluated".
"""
import argparse
import ast
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLASSES = {
    "Gemma4DenseProvider": "megatron/bridge/models/gemma/gemma4_provider.py",
    "Gemma4ModelProvider": "megatron/bridge/models/gemma/gemma4_provider.py",
    "Gemma4DenseVLProvider": "megatron/bridge/models/gemma_vl/gemma4_vl_provider.py",
    "Gemma4VLModelProvider": "megatron/bridge/models/gemma_vl/gemma4_vl_provider.py",
}


class Module:
    def __init__(self, name, path):
        self.name, self.tree = name, ast.parse(path.read_text())
        self.imports = {}  # local name -> dotted path
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom):
                # `from ..x import y` inside package a.b.c: a.x (files only; no provider lives in an __init__)
                base = ".".join(name.split(".")[: -node.level]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                for a in node.names:
                    self.imports[a.asname or a.name] = f"{module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    self.imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        self.classes = {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}
        self.functions = {n.name for n in self.tree.body if isinstance(n, ast.FunctionDef)}


class Sources:
    def __init__(self, mb, mcore):
        self.roots = [mb, mcore]
        self.modules = {}

    def module(self, dotted):
        if dotted not in self.modules:
            rel = pathlib.Path(*dotted.split("."))
            for root in self.roots:
                for p in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
                    if p.exists():
                        self.modules[dotted] = Module(dotted, p)
                        return self.modules[dotted]
            self.modules[dotted] = None
        return self.modules[dotted]

    def find_class(self, mod, name):
        """(module, ClassDef) of `name` as seen from `mod`, following imports and package re-exports."""
        if name in mod.classes:
            return mod, mod.classes[name]
        target = mod.imports.get(name)
        if not target:
            return None
        owner, _, cls = target.rpartition(".")
        m = self.module(owner)
        return self.find_class(m, cls) if m else None

    def dotted(self, mod, node):
        """The import path an expression names (a function, class or module attribute)."""
        if isinstance(node, ast.Name):
            if node.id in mod.imports:
                return mod.imports[node.id]
            if node.id in mod.functions or node.id in mod.classes:
                return f"{mod.name}.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self.dotted(mod, node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def enum_value(self, dotted):
        owner, _, member = dotted.rpartition(".")
        mod_name, _, cls = owner.rpartition(".")
        m = self.module(mod_name)
        found = self.find_class(m, cls) if m else None
        if not found:
            return None
        for stmt in found[1].body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == member for t in stmt.targets):
                if isinstance(stmt.value, ast.Constant):
                    return f"{found[0].name}.{cls}", stmt.value.value
        return None


UNEVALUATED = object()


def evaluate(src, mod, node):
    """The YAML value of a default expression, or UNEVALUATED."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add)):
        a, b = evaluate(src, mod, node.left), evaluate(src, mod, node.right)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a * b if isinstance(node.op, ast.Mult) else a + b
        return UNEVALUATED
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [evaluate(src, mod, e) for e in node.elts]
        return UNEVALUATED if any(i is UNEVALUATED for i in items) else items
    if isinstance(node, ast.Dict) and not node.keys:
        return {}
    if isinstance(node, ast.Call):
        fn = src.dotted(mod, node.func) or ""
        if fn.endswith("dataclasses.field") or (isinstance(node.func, ast.Name) and node.func.id == "field"):
            kw = {k.arg: k.value for k in node.keywords}
            if "default" in kw:
                return evaluate(src, mod, kw["default"])
            factory = kw.get("default_factory")
            if isinstance(factory, ast.Name) and factory.id in ("list", "dict"):
                return [] if factory.id == "list" else {}
            if isinstance(factory, ast.Attribute) and factory.attr == "can_enable_gradient_accumulation_fusion":
                return False  # needs the fused CUDA kernels (APEX/TE); false where they are absent
            if isinstance(factory, ast.Lambda):
                return evaluate(src, mod, factory.body)
            return UNEVALUATED
        if fn.endswith("functools.partial") and node.args:
            target = src.dotted(mod, node.args[0])
            if not target:
                return UNEVALUATED
            out = {"_target_": target, "_partial_": True, "_args_": []}
            for k in node.keywords:
                v = evaluate(src, mod, k.value)
                if v is UNEVALUATED:
                    return UNEVALUATED
                out[k.arg] = v
            return out
        return UNEVALUATED
    if isinstance(node, ast.Name) and node.id == "HAVE_TE":
        return True  # the MoE path needs Transformer Engine, so MB writes True wherever it can build it
    dotted = src.dotted(mod, node)
    if dotted:
        if dotted.startswith("torch.") and dotted.split(".")[-1] in ("bfloat16", "float16", "float32"):
            return {"_target_": dotted, "_call_": False}
        enum = src.enum_value(dotted)
        if enum:
            return {"_target_": enum[0], "_call_": True, "_args_": [enum[1]], "_name_": dotted.rsplit(".", 1)[1]}
        return {"_target_": dotted, "_call_": False}  # a function or class object
    return UNEVALUATED


def fields_of(src, mod, cls, seen=None):
    """Dataclass fields in dataclass order (bases first), the most derived default winning."""
    fields = {}
    for base in cls.bases:
        name = base.value.id if isinstance(base, ast.Subscript) and isinstance(base.value, ast.Name) else getattr(base, "id", None)
        if isinstance(base, ast.Attribute):
            name = base.attr
        if not name or name in ("ABC", "Generic"):
            continue
        found = src.find_class(mod, name)
        if found:
            for k, v in fields_of(src, found[0], found[1]).items():
                fields.setdefault(k, v) if k not in fields else fields.__setitem__(k, v)
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            ann = ast.unparse(stmt.annotation)
            if ann.startswith("ClassVar") or name.startswith("_"):
                continue
            value = evaluate(src, mod, stmt.value) if stmt.value is not None else UNEVALUATED
            fields[name] = value
    return fields


def provider_fields(mb, mcore):
    """{"classes": {class: {field: default}}, "unevaluated": {class: [field]}} for the four providers."""
    src = Sources(pathlib.Path(mb), pathlib.Path(mcore))
    out = {"source": "Megatron-Bridge 0.6.2 + megatron-core 0.19.2 (read with ast)", "classes": {}, "unevaluated": {}}
    for cls, rel in CLASSES.items():
        mod = src.module(rel[:-3].replace("/", "."))
        fields = fields_of(src, mod, mod.classes[cls])
        out["classes"][cls] = {k: (None if v is UNEVALUATED else v) for k, v in fields.items()}
        out["unevaluated"][cls] = sorted(k for k, v in fields.items() if v is UNEVALUATED)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", default="/work/ref/mb-0.6.2")
    ap.add_argument("--mcore", default="/work/ref/mcore-0.19.2")
    args = ap.parse_args()
    out = provider_fields(args.mb, args.mcore)
    (ROOT / "testdata/gen/mb-0.6.2-provider-fields.json").write_text(json.dumps(out, indent=1) + "\n")

    # The C++ table: every field of any provider, its class defaults, and which providers have it.
    names = []
    for cls in CLASSES:
        for k in out["classes"][cls]:
            if k not in names:
                names.append(k)
    lines = ["// Generated by testdata/gen/gen_mb_provider_fields.py from Megatron-Bridge 0.6.2 and megatron-core 0.19.2;",
             "// do not edit. {name, default in Gemma4DenseProvider, Gemma4ModelProvider, Gemma4DenseVLProvider,",
             "// Gemma4VLModelProvider (JSON texts; nullptr: not a field of that class)}.",
             ]
    for k in names:
        cells = []
        for c in CLASSES:
            f = out["classes"][c]
            cells.append(f'R"j({json.dumps(f[k])})j"' if k in f else "nullptr")
        lines.append(f'{{"{k}", {", ".join(cells)}}},')
    (ROOT / "src/convert/mb_provider_fields.inc").write_text("\n".join(lines) + "\n")
    print(f"{len(names)} fields; unevaluated: " + ", ".join(sorted(set(sum(out['unevaluated'].values(), [])))), file=sys.stderr)


if __name__ == "__main__":
    main()
