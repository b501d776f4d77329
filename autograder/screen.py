"""A trusted static reading of the upload, before any of it runs.

The harness parses model.py with `ast` (it never imports it) and refuses a file that reaches
into the grader or the interpreter: the worker that runs the upload also holds the grader's
probes and records (infkit.checks, worker.py, speed.py), so code that can reach those objects
can write its own verdict. A refused upload is not run at all: every row gets 0, one message
naming the line and the construct, and a flag for staff review (`flags` in results.json and
in every row's `extra_data`).

What is refused, and why (each rule is one entry of the tables below):

- importing the grader's modules (infkit, autograder, worker, speed, the reference, the
  solution...) or the interpreter's back doors (gc, ctypes, importlib, builtins, inspect,
  pickle and marshal, runpy...): they lead to the grader's objects in the worker, or to
  code the screen cannot read; also when they are reached as another module's attribute
  (`torch.sys`, `torch.serialization.pickle`);
- the same reached without an import statement: `__import__`, `sys.modules` (an attribute
  read, not a call: `nn.Module.modules()` is a call and stays allowed), modules re-exported
  as attributes (`torch.sys`), frame and code objects (`sys._getframe`, `f_back`,
  `__globals__`, `__code__`, `types.CodeType`, tracing hooks), the class-hierarchy walk
  (`__subclasses__`, `__mro__`), `globals()`, and any of these names spelt as a string;
- `exec`, `eval` and `compile` of anything but a string literal (a literal is screened as
  code), and `getattr`/`setattr`/`delattr`/`hasattr`/`attrgetter`/`methodcaller` of a name
  built at run time (they would spell any refused name past this reading);
- unpickling (`weights_only=False`, `allow_pickle=True`): it imports and calls whatever the
  bytes name; native code (`ctypes`, `cffi`, torch's `load_inline`, `load_library`);
- listing folders (`os.walk`, `listdir`, `scandir`, `glob`, `iterdir`): model.py has no files
  of its own to look for, and the grading machine is not the upload's to search.

None of this is what a GPT-2 model file needs: tests/test_screen.py measures it on every file
of the kit's corpus (the solution, the starter, every buggy and correct variant and every
realistic student file), none of which is refused. What a static reading cannot rule out
(code that assembles its routes from data at run time in ways not listed here) is stated in
docs/grading.md's threat model; the worker's kernel-level confinement does not rest on it.
"""

import ast
import os
from dataclasses import dataclass
from pathlib import Path

# Modules the upload must not import (the first component of the dotted name), with why.
_GRADER = "the grader's own code, which runs beside yours in the worker"
_INTERPRETER = "it reaches into the interpreter, and through it into the grader's objects"
REFUSED_MODULES = {
    **dict.fromkeys(
        (
            "infkit",
            "autograder",
            "worker",
            "speed",
            "harness",
            "sandbox",
            "confine",
            "verdicts",
            "rubric",
            "checks",
            "screen",
            "reference_model",
            "solution",
            "starter",
            "model",
        ),
        _GRADER,
    ),
    **dict.fromkeys(
        ("gc", "inspect", "importlib", "imp", "builtins", "__builtin__", "runpy", "pkgutil", "zipimport"),
        _INTERPRETER,
    ),
    **dict.fromkeys(("code", "codeop", "marshal"), "it runs code that this reading of your file cannot see"),
    **dict.fromkeys(
        ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "copyreg"),
        "unpickling imports and calls whatever the data names",
    ),
    **dict.fromkeys(("ctypes", "_ctypes", "cffi"), "native calls bypass every rule of the interpreter"),
    "glob": "it searches the grading machine's folders; model.py has no files of its own to look for",
}

# Attribute names refused wherever they appear (x.NAME, and getattr(x, "NAME")).
_FRAMES = "frame, code and tracing objects lead to the grader's functions and their variables"
_CLASSES = "walking the class hierarchy or a function's globals leads to the grader's objects"
_LISTING = "it lists the grading machine's folders; model.py has no files of its own to look for"
_NATIVE = "native code bypasses every rule of the interpreter"
REFUSED_ATTRIBUTES = {
    **dict.fromkeys(
        (
            "f_back",
            "f_globals",
            "f_locals",
            "f_builtins",
            "f_code",
            "f_trace",
            "tb_frame",
            "tb_next",
            "gi_frame",
            "gi_code",
            "cr_frame",
            "cr_code",
            "ag_frame",
            "ag_code",
            "co_code",
            "co_consts",
            "co_names",
            "_getframe",
            "_current_frames",
            "currentframe",
            "getouterframes",
            "getinnerframes",
            "walk_stack",
            "walk_tb",
            "settrace",
            "setprofile",
            "gettrace",
            "getprofile",
            "addaudithook",
            "monitoring",
            "__code__",
            "__traceback__",
            "CodeType",
            "FunctionType",
            "FrameType",
        ),
        _FRAMES,
    ),
    **dict.fromkeys(
        (
            "__globals__",
            "__closure__",
            "__builtins__",
            "__subclasses__",
            "__bases__",
            "__base__",
            "__mro__",
            "__getattribute__",
            "__reduce__",
            "__reduce_ex__",
            "__loader__",
            "__spec__",
            "__import__",
        ),
        _CLASSES,
    ),
    # modules reached as another module's attribute (torch.sys, os.sys ...) and the import
    # machinery's tables
    **dict.fromkeys(
        (
            "sys",
            "builtins",
            "importlib",
            "import_module",
            "gc",
            "ctypes",
            "inspect",
            "meta_path",
            "path_hooks",
            "path_importer_cache",
        ),
        _INTERPRETER,
    ),
    **dict.fromkeys(
        ("pickle", "_pickle", "cPickle", "dill", "marshal", "copyreg"),
        "unpickling imports and calls whatever the data names",
    ),
    **dict.fromkeys(("walk", "fwalk", "scandir", "listdir", "iterdir", "glob", "rglob"), _LISTING),
    **dict.fromkeys(("load_inline", "cpp_extension", "load_library", "PackageImporter"), _NATIVE),
}
# A string constant spelling one of these is refused too (getattr's name, a subscript, an
# attrgetter): they are names of the interpreter's internals, not words a message would hold.
REFUSED_STRINGS = {name for name, why in REFUSED_ATTRIBUTES.items() if why in (_FRAMES, _CLASSES)}
# Built-ins that fetch attributes by a string: the string must be a literal, and is checked.
ATTRIBUTE_GETTERS = ("attrgetter", "methodcaller")
# `sys.modules` is a table, `nn.Module.modules()` a method: refused unless it is called.
UNCALLED_ATTRIBUTES = {"modules": "sys.modules holds the grader's loaded modules"}
# `x.__dict__` is refused except on self (a class's own attributes)
DICT_ATTRIBUTE = "__dict__"

# Built-in names: refused outright, or allowed only as a direct call on literal arguments.
_BUILT = "it runs code built at run time, which this reading of your file cannot check"
REFUSED_NAMES = {
    "__import__": _INTERPRETER,
    "__builtins__": _INTERPRETER,
    "__loader__": _INTERPRETER,
    "__spec__": _INTERPRETER,
    "globals": "globals() leads to the interpreter's built-ins",
    "locals": "locals() at the top of a module is globals(), which leads to the interpreter's built-ins",
    "breakpoint": "a debugger hook runs arbitrary code",
}
CODE_BUILTINS = {"exec": "exec", "eval": "eval", "compile": "exec"}  # name -> the mode a literal is parsed in
ATTRIBUTE_BUILTINS = ("getattr", "setattr", "delattr", "hasattr")
# keyword=value pairs that turn a loader into an unpickler
UNPICKLING_KEYWORDS = {("weights_only", False), ("allow_pickle", True)}

MAX_LITERAL_DEPTH = 4  # exec("exec('...')"): literals inside literals are screened this deep


@dataclass(frozen=True)
class Refusal:
    line: int
    construct: str  # what the file does, e.g. "import infkit"
    why: str

    @property
    def message(self) -> str:
        return (
            f"REFUSED: model.py line {self.line}: {self.construct} is not allowed here ({self.why}). "
            "The grader did not run your file; a model.py needs none of this. The course staff will "
            "review this submission."
        )

    @property
    def flag(self) -> str:
        return f"refused: model.py line {self.line}: {self.construct}"


# Staff only (the upload cannot set the harness's environment): `off` grades without the
# screen, to see what a flagged upload does inside the sandbox, which the kit's tests of the
# sandbox itself rely on.
SCREEN_ENV = "AUTOGRADER_SCREEN"


def screen_upload(path: Path) -> Refusal | None:
    """The harness's check of the upload before its first test: a Refusal, or None to grade."""
    if os.environ.get(SCREEN_ENV, "").lower() == "off":
        return None
    return screen_file(path)


def flagged(row: dict, flag: str) -> dict:
    """A results.json row carrying a flag for staff review (Gradescope keeps extra_data)."""
    row.setdefault("extra_data", {}).setdefault("flags", []).append(flag)
    return row


def screen_file(path: Path) -> Refusal | None:
    """The first refused construct of the file at `path`, or None (also when it does not
    parse: the worker then reports the syntax error as the student's import error)."""
    try:
        return screen(path.read_bytes())
    except OSError:
        return None


def screen(source: bytes | str, _depth: int = 0, _mode: str = "exec", _line: int = 0) -> Refusal | None:
    """The first refused construct of `source` (in line order), or None."""
    try:
        tree = ast.parse(source, mode=_mode)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # Python cannot compile it either: the worker reports the error
    found = []
    called = set()
    nodes = list(ast.walk(tree))  # breadth-first and iterative: no recursion limit on deep files
    for node in nodes:
        if isinstance(node, ast.Call):
            called.add(id(node.func))
    for node in nodes:
        refusal = _check(node, called, _depth)
        if refusal is not None:  # the first in reading order; innermost first where they nest
            where = (refusal.line, getattr(node, "col_offset", 0), getattr(node, "end_col_offset", 0) or 0)
            found.append((where, refusal))
    if not found:
        return None
    first = min(found, key=lambda f: f[0])[1]
    return Refusal(first.line + _line, first.construct, first.why) if _line else first


def _check(node, called: set, depth: int) -> Refusal | None:
    line = getattr(node, "lineno", 0)
    if isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in REFUSED_MODULES:
                return Refusal(line, f"import {alias.name}", REFUSED_MODULES[top])
            refusal = _dotted(alias.name.split(".")[1:], line, f"import {alias.name}")
            if refusal is not None:
                return refusal
    elif isinstance(node, ast.ImportFrom):
        parts = (node.module or "").split(".")
        if node.level == 0 and parts[0] in REFUSED_MODULES:
            return Refusal(line, f"from {node.module} import ...", REFUSED_MODULES[parts[0]])
        if node.level > 0:  # model.py is a single file: a relative import can only reach the grader
            return Refusal(line, f"from {'.' * node.level}{node.module or ''} import ...", _GRADER)
        # from torch.utils import cpp_extension, from os import walk: the names as attributes
        names = parts[1:] + [alias.name for alias in node.names]
        return _dotted(names, line, f"from {node.module} import {', '.join(a.name for a in node.names)}")
    elif isinstance(node, ast.Attribute):
        return _attribute(node.attr, line, called_here=id(node) in called, on_self=_is_self(node.value))
    elif isinstance(node, ast.Name):
        if node.id in REFUSED_NAMES:
            return Refusal(line, node.id, REFUSED_NAMES[node.id])
        only_called = node.id in CODE_BUILTINS or node.id in ATTRIBUTE_BUILTINS or node.id == "vars"
        if only_called and id(node) not in called:  # f = getattr; f(x, name) would pass unread
            return Refusal(line, f"{node.id} used as a value", _BUILT)
    elif isinstance(node, ast.Call):
        for kw in node.keywords:
            value = kw.value.value if isinstance(kw.value, ast.Constant) else None
            if (kw.arg, value) in UNPICKLING_KEYWORDS and type(value) is bool:
                return Refusal(line, f"{kw.arg}={value}", REFUSED_MODULES["pickle"])
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name in ATTRIBUTE_GETTERS:
            return _getter(node, name, line)
        if isinstance(node.func, ast.Name):
            return _call(node, node.func.id, line, depth)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        # a subscript or getattr spelling a refused name: globals()["__builtins__"], ...
        if node.value in REFUSED_STRINGS:
            return Refusal(line, repr(node.value), REFUSED_ATTRIBUTES[node.value])
    return None


def _getter(node: ast.Call, name: str, line: int) -> Refusal | None:
    """operator.attrgetter("a.b"), methodcaller("name"): literal names only, each part checked."""
    args = node.args if name == "attrgetter" else node.args[:1]
    for arg in args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            return Refusal(line, f"{name}() of a name built at run time", _BUILT)
        for part in arg.value.split("."):
            refusal = _attribute(part, line, called_here=name == "methodcaller", on_self=False)
            if refusal is not None:
                return refusal
    return None


def _attribute(attr: str, line: int, called_here: bool, on_self: bool) -> Refusal | None:
    if attr in REFUSED_ATTRIBUTES:
        return Refusal(line, f".{attr}", REFUSED_ATTRIBUTES[attr])
    if attr in UNCALLED_ATTRIBUTES and not called_here:
        return Refusal(line, f".{attr} (not called)", UNCALLED_ATTRIBUTES[attr])
    if attr == DICT_ATTRIBUTE and not on_self:
        return Refusal(line, ".__dict__ of anything but self", _CLASSES)
    return None


def _dotted(names: list, line: int, construct: str) -> Refusal | None:
    """An import that reaches a refused attribute (torch.utils.cpp_extension, os.walk ...)."""
    for name in names:
        if name in REFUSED_ATTRIBUTES or name in UNCALLED_ATTRIBUTES:
            why = REFUSED_ATTRIBUTES.get(name) or UNCALLED_ATTRIBUTES[name]
            return Refusal(line, f"{construct} (.{name})", why)
    return None


def _is_self(node) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _call(node: ast.Call, name: str, line: int, depth: int) -> Refusal | None:
    if name in CODE_BUILTINS:
        source = node.args[0] if node.args else None
        if not (isinstance(source, ast.Constant) and isinstance(source.value, str | bytes)):
            return Refusal(line, f"{name}() of a string built at run time", _BUILT)
        if depth >= MAX_LITERAL_DEPTH:
            return Refusal(line, f"{name}() nested {depth} deep", _BUILT)
        mode = CODE_BUILTINS[name]
        if name == "compile" and len(node.args) > 2 and isinstance(node.args[2], ast.Constant):
            mode = node.args[2].value if node.args[2].value in ("exec", "eval", "single") else "exec"
        inner = screen(source.value, depth + 1, mode, _line=line - 1)
        if inner is not None:
            return inner
    elif name in ATTRIBUTE_BUILTINS:
        attr = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
            return Refusal(line, f"{name}() of a name built at run time", _BUILT)
        return _attribute(attr.value, line, called_here=False, on_self=_is_self(node.args[0]))
    elif name == "vars" and not (len(node.args) == 1 and _is_self(node.args[0])):
        return Refusal(line, "vars() of anything but self", _CLASSES)
    return None
