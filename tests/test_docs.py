"""The docs state what is: claims that the code knows (a module list, a version range, pins, the
benchmark's defaults and goals, paths, environment variables) are held to the code, and no
file narrates the rounds in which the kit was built."""

import ast
import re
import subprocess
from pathlib import Path

import pytest
import tomllib

from infkit import fixtures, paths

ROOT = paths.ROOT
DOCS = sorted((ROOT / "docs").glob("*.md"))
PROSE = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS]


def tracked_text_files() -> list[Path]:
    """Every file git tracks that is text (the whole tree, less .venv and build, without git)."""
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
        ).stdout.split("\0")
        files = [ROOT / name for name in names if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    text = []
    for path in files:
        try:
            path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        text.append(path)
    return text


# ---------------------------------------------------------------------------------------
# No file narrates the rounds in which the kit was built

_ORDINAL = (
    r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth"
    r"|\d+(?:st|nd|rd|th))"
)
_S = "sess" + "ion"  # spelt in two so that this file's own source does not match
_SESSION = _S + "s?"
NARRATION = [
    # an ordinal before the word, alone or as a range (examples: test_narration_is_found)
    re.compile(rf"\b{_ORDINAL}(?:\s+(?:to|and|or)\s+{_ORDINAL})?\s+{_SESSION}\b", re.I),
    re.compile(rf"\b{_SESSION}\s+\d+\b", re.I),  # the word and a number
    # the word after "in this", "since the previous" and the like
    re.compile(
        rf"\b(?:in|during|since|before|after|until)\s+(?:this|that|any|every|the)\s+"
        rf"(?:(?:earlier|later|previous|next|last)\s+)?{_SESSION}\b",
        re.I,
    ),
    re.compile(rf"\b{_SESSION}\s+so\s+far\b", re.I),
    re.compile(r"\b(?:runs|trials)\s+[A-Z]{1,2}\d?\s*-\s*[A-Z]{1,2}\d?\b"),  # "runs A-E", "trials T0-T7"
    re.compile(r"\b(?:run|trial)\s+[A-Z]{1,2}\d?(?=[\s,.;:)])"),  # "run UL", "run T2"
]
# The two other meanings of the word: an OS session (setsid, autogroup scheduling) and pytest's
# session scope; the patterns above never match those uses (test_other_uses_are_not_narration).


def narration(text: str) -> list[str]:
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern in NARRATION:
            match = pattern.search(line)
            if match:
                hits.append(f"{number}: {match.group(0)!r} in {line.strip()[:120]!r}")
    return hits


def test_no_file_narrates_the_rounds_it_was_built_in():
    here = Path(__file__).resolve()
    found = {}
    for path in tracked_text_files():
        name = path.relative_to(ROOT).as_posix()
        if path.resolve() == here:
            continue
        hits = narration(path.read_text(encoding="utf-8"))
        if hits:
            found[name] = hits
    assert not found, "say what is, with a date and commit, not which round it came from:\n" + "\n".join(
        f"{name}:{hit}" for name, hits in found.items() for hit in hits
    )


@pytest.mark.parametrize(
    "line",
    [
        f"measured in the ninth {_S}",
        f"the fifth to eighth {_S}s",
        f"2026-11-30 (seventh {_S}), 16:00",
        f"the 9th {_S}",
        f"{_S} 4 found",
        f"untested in this {_S}",
        f"since the previous {_S}",
        f"no GPU in any {_S} so far",
        "(runs A-E below)",
        "runs T0-T7 below",
        "run UL there",
        "as in run T2,",
    ],
)
def test_narration_is_found(line):
    assert narration(line), line


@pytest.mark.parametrize(
    "line",
    [
        "each hog in a session of its own",
        "start_new_session=True",
        '@pytest.fixture(scope="session")',
        "this machine schedules by session (autogroup)",
        "the newest token is fed again by the first round",
        "Run it once per session.",
        f"give this {_S} a uid of its own",
        "runs at batch 1, run I/O",
    ],
)
def test_other_uses_are_not_narration(line):
    assert not narration(line), narration(line)


# ---------------------------------------------------------------------------------------
# The measurement pages: short, the current figures dated and tied to a commit

COMMIT = re.compile(r"\b[0-9a-f]{7,40}\b")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


@pytest.mark.parametrize("name", ["performance.md", "fixtures.md"])
def test_measurement_pages_are_short_and_dated(name):
    text = (ROOT / "docs" / name).read_text()
    assert len(text.splitlines()) <= 160, f"docs/{name}: the method, current figures, how to re-measure"
    assert "## Re-measuring" in text
    for section in re.split(r"\n(?=### |## )", text):
        if re.match(r"#{2,3} .*(figures|measured|agreement and cost)", section, re.I):
            assert DATE.search(section) and COMMIT.search(section), section.splitlines()[0]


def test_the_history_is_one_dated_log():
    """docs/history.md: entries by date and commit only, newest first, each commit real."""
    text = (ROOT / "docs" / "history.md").read_text()
    entries = re.findall(r"^- \*\*(20\d\d-\d\d-\d\d), ([0-9a-f]{7,40})\*\*", text, re.M)
    assert len(entries) >= 5
    dates = [date for date, _ in entries]
    assert dates == sorted(dates, reverse=True), "newest first"
    items = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(items) == len(entries), "every entry starts with its date and commit"
    try:
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return  # an unpacked copy without history: the dates are still checked above
    for date, commit in entries:
        shown = subprocess.run(
            ["git", "show", "-s", "--format=%ad", "--date=short", commit],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert shown.returncode == 0, f"docs/history.md names {commit}, which is not a commit here"
        assert shown.stdout.strip() == date, (commit, date, shown.stdout.strip())


# ---------------------------------------------------------------------------------------
# Lists and numbers the code knows


def test_infkit_module_list_is_the_packages():
    """infkit/__init__.py's docstring lists every module of the package, and nothing else."""
    doc = ast.get_docstring(ast.parse((ROOT / "infkit" / "__init__.py").read_text()))
    listed = re.findall(r"^  ([a-z_]+)\s{2,}\S", doc, re.M)
    package = ROOT / "infkit"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert listed == sorted(listed), "keep the list alphabetical"
    assert set(listed) == modules, {"listed, absent": set(listed) - modules, "missing": modules - set(listed)}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_python_range_is_requires_python():
    """The README and requirements.txt state the Python range as pyproject.toml holds it, and ruff
    lints for its lowest version."""
    config = _pyproject()
    required = config["project"]["requires-python"]
    lowest = re.fullmatch(r">=\s*3\.(\d+)", required)
    assert lowest, f"requires-python {required!r}: state its range in the README and here"
    minor = lowest.group(1)
    assert config["tool"]["ruff"]["target-version"] == f"py3{minor}"
    for name in ("README.md", "requirements.txt"):
        text = " ".join((ROOT / name).read_text().split())
        assert f"Python 3.{minor} or newer" in text, name
        assert not re.search(r"Python 3\.\d+\s*-\s*3\.\d+", text), f"{name}: a range the code does not hold"


def _pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return found


def test_one_source_of_version_pins():
    """requirements.txt holds the kit's pins; pyproject.toml lists none (nothing installs it),
    and every other pin of the kit's packages equals requirements.txt's."""
    config = _pyproject()["project"]
    assert "dependencies" not in config and "optional-dependencies" not in config
    kit = _pins(ROOT / "requirements.txt")
    grader = _pins(ROOT / "autograder" / "requirements.txt")
    assert grader and all(kit.get(name) == version for name, version in grader.items()), (grader, kit)
    setup = (ROOT / "autograder" / "setup.sh").read_text()
    readme = (ROOT / "README.md").read_text()
    for text, where in ((setup, "autograder/setup.sh"), (readme, "README.md")):
        for name, version in re.findall(r"\b(torch|transformers|numpy|tiktoken)==([\w.]+)", text):
            assert kit[name] == version, f"{where} pins {name}=={version}, requirements.txt {kit[name]}"
    assert "torch==" in setup


def test_make_test_is_said_to_be_part_of_ci():
    """.ci/run runs `make test` and more; the README names each of the others."""
    ci = (ROOT / ".ci" / "run").read_text()
    targets = []
    for line in ci.splitlines():
        command = line.split("#")[0].strip()
        if command.startswith("make "):
            targets += command.split()[1:]
    assert targets[0] == "test", targets
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "what CI runs)" not in readme, "make test is only the first part of .ci/run"
    for target in targets:
        assert f"make {target}" in readme, f"README: .ci/run also runs make {target}"
    makefile = (ROOT / "Makefile").read_text()
    assert "(what CI runs)" not in makefile


def test_the_benchmark_defaults_as_the_docs_state_them():
    """The workloads, the stand-in pair and the goals that the README and docs quote."""
    from infkit.bench import analyse, cli, config

    throughput, latency = cli.parse([]).workloads
    assert throughput.test == "throughput" and latency.test == "latency"
    workloads = [
        f"{throughput.prompt_len}-token prompts, {throughput.new_tokens} new tokens",
        f"{latency.prompt_len}-token prompts, {latency.new_tokens} new tokens",
        "batch sizes 1 and 4"
        if throughput.batch_sizes == (1, 4)
        else f"batch sizes {throughput.batch_sizes}",
    ]
    shape = fixtures.SHAPES["bench"]
    spec = fixtures.PAIRS["bench"]
    pair = f"{shape['n_layer']} x {shape['n_embd']}"
    for name in ("docs/benchmark.md", "docs/performance.md"):
        text = " ".join((ROOT / name).read_text().split())
        for phrase in workloads:
            assert phrase in text, (name, phrase)
    perf = " ".join((ROOT / "docs" / "performance.md").read_text().split())
    assert f"{pair} target" in perf and f"scale {spec.scale:g}" in perf
    assert f"{spec.draft_layers}-layer draft" in perf
    for spec_ in analyse.FIGURES:  # the kit's CPU reference is the quiet runs' range
        if spec_.reference:
            low, high = spec_.reference
            assert f"{low:.2f}x" in perf and f"{high:.2f}x" in perf, spec_.key
    assert f"`SPREAD_LIMIT` ({config.SPREAD_LIMIT:.0%})" in perf
    assert f"`OTHERS_LIMIT` ({config.OTHERS_LIMIT:.0%})" in perf
    assert f"`LOAD_LIMIT`, {config.LOAD_LIMIT:g}" in perf
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert all(
        phrase.replace("batch sizes", "batch") in readme or phrase in readme for phrase in workloads[:2]
    )


def _table(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_readme_figures_are_the_measured_ones():
    """The README's table of run.sh figures quotes docs/performance.md's current runs."""
    header = "| figure | quiet 1 | quiet 2 | quiet 3 |"
    readme = {row[0]: row[1:] for row in _table((ROOT / "README.md").read_text(), header)}
    perf = {row[0]: row[1:] for row in _table((ROOT / "docs" / "performance.md").read_text(), header)}
    assert len(readme) >= 4
    for figure, cells in readme.items():
        assert figure in perf, figure
        for quoted, measured in zip(cells, perf[figure], strict=False):
            # the README keeps the figure and drops its range
            assert measured.startswith(quoted.split(",")[0]), (figure, quoted, measured)


# ---------------------------------------------------------------------------------------
# Paths and names the docs cite exist


PATH = re.compile(
    r"`((?:autograder|infkit|tests|notebooks|solution|starter|written|docs|\.ci)/[\w./-]+?)(?:`|::|:)"
)


def test_every_cited_path_exists():
    missing = []
    for doc in PROSE:
        for cited in PATH.findall(doc.read_text()):
            cited = cited.rstrip(".")
            if "<" in cited or "*" in cited:
                continue
            if not (ROOT / cited).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {cited}")
    assert not missing, missing


def test_environment_variables_table_is_the_codes():
    """docs/grading.md's table lists every INFKIT_/AUTOGRADER_ variable the code reads."""
    pattern = re.compile(r"\b((?:INFKIT|AUTOGRADER)_[A-Z_]+[A-Z])\b")
    quoted = re.compile(r"[\"']((?:INFKIT|AUTOGRADER)_[A-Z_]+[A-Z])[\"']")  # Python: a name in a string
    used = set()
    for folder in ("infkit", "autograder", "staff", "handout", "notebooks"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(quoted.findall(path.read_text()))
    for name in ("Makefile", "run.sh", "autograder/setup.sh", "autograder/run_autograder"):
        used |= set(pattern.findall((ROOT / name).read_text()))
    text = (ROOT / "docs" / "grading.md").read_text()
    table = text[text.index("## Environment variables") :]
    listed = set(pattern.findall(table))
    assert used <= listed, sorted(used - listed)
    assert listed <= used, sorted(listed - used)


def _parameters(shape: dict, layers: int) -> int:
    """GPT-2's parameter count (tied head counted once, biases included) of `layers` blocks."""
    d = shape["n_embd"]
    block = 12 * d * d + 13 * d  # two layer norms, c_attn, attn.c_proj, c_fc, mlp.c_proj
    return shape["vocab_size"] * d + shape["block_size"] * d + layers * block + 2 * d


def test_the_bench_pair_sizes_the_docs_quote():
    """docs/performance.md's parameter counts of the offline pair, from fixtures.SHAPES."""
    shape, spec = fixtures.SHAPES["bench"], fixtures.PAIRS["bench"]
    target = _parameters(shape, shape["n_layer"]) / 1e6
    draft = _parameters(shape, spec.draft_layers) / 1e6
    for name in ("docs/performance.md", "docs/fixtures.md"):
        text = (ROOT / name).read_text()
        assert f"{target:.0f}M" in text and f"{draft:.1f}M" in text, (name, target, draft)


def _make_marks(target: str) -> str:
    """The -m expression a Makefile target's pytest line passes."""
    lines = (ROOT / "Makefile").read_text().split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return re.search(r'pytest -q -m "([^"]+)"', lines).group(1)


def test_ci_runs_every_test_the_default_selects():
    """`make test` and `make test-grading` split the tests pytest selects by default (pyproject's
    addopts) between them, none left out and none twice, and .ci/run runs both."""
    default = re.search(r"-m '([^']+)'", _pyproject()["tool"]["pytest"]["ini_options"]["addopts"]).group(1)
    fast, grading = _make_marks("test"), _make_marks("test-grading")
    markers = {m.split(":")[0] for m in _pyproject()["tool"]["pytest"]["ini_options"]["markers"]}
    assert markers == {"slow", "grading"}, markers

    def selects(expression, marks):
        return eval(expression, {}, {m: m in marks for m in markers})

    for marks in ({"slow"}, {"grading"}, {"slow", "grading"}, set()):
        if selects(default, marks):
            assert selects(fast, marks) != selects(grading, marks), (marks, fast, grading)
        else:
            assert not selects(fast, marks) and not selects(grading, marks), marks
    ci = [line.split("#")[0].split() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ["make", "test"] in ci and ["make", "test-grading"] in ci


def test_grading_limits_as_the_docs_quote_them():
    """docs/grading-all.md's time limits and budget are the rubric's."""
    from autograder import rubric

    text = " ".join((ROOT / "docs" / "grading-all.md").read_text().split())
    sentence = text[text.index("Every test has a wall-clock limit") :].split(" budget")[0]
    quoted = {float(x) for x in re.findall(r"(\d+) s\b", sentence)}
    assert quoted == {t.timeout_s for t in rubric.TESTS} | {rubric.BUDGET_S}, (quoted, sentence)
