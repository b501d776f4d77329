"""grades.csv and report.html of `make grade-all`, read from the results.json files generically:
each test by its name, score and max_score, and what decided it by its machine-readable record
(extra_data, autograder/harness.py row_record), never by the wording of its output; no row
positions assumed."""

import base64
import csv
import html
import io
import re
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

from autograder import text
from autograder.rows import flags_of

FIXED_COLUMNS = ["id", "student", "email", "sid", "total", "max", "status", "problems"]
PRINTED = "\nThe last lines your code printed"
# A row's stage (and the limit a crashed or skipped worker hit) -> the kind of problem staff
# look at (the "limits" table). Stages not listed are the student's own results.
STAGE_KINDS = {
    "timed_out": "time limit",
    "not_measured": "not measured",
    "autograder_error": "autograder error",
}
LIMIT_KINDS = {
    "cpu": "time limit",
    "time budget": "time limit",
    "memory": "memory limit",
    "output": "output limit",
    "signal": "worker crashed",
    "exit": "worker crashed",
    "broken": "autograder error",
}


def record_of(test: dict) -> dict:
    """A row's machine-readable record (empty for rows written without one)."""
    record = test.get("extra_data")
    return record if isinstance(record, dict) else {}


def limit_kind(test: dict) -> str | None:
    record = record_of(test)
    return STAGE_KINDS.get(record.get("stage")) or LIMIT_KINDS.get(record.get("limit"))


def tests_of(results: dict) -> list[dict]:
    tests = results.get("tests")
    return [t for t in tests if isinstance(t, dict) and "name" in t] if isinstance(tests, list) else []


def test_names(records) -> list[str]:
    """Every test name in the order the harness writes them (first seen first)."""
    names = {}
    for r in records:
        for t in tests_of(r.results):
            names.setdefault(str(t["name"]), None)
    return list(names)


def max_points(results: dict) -> float:
    return sum(float(t.get("max_score") or 0) for t in tests_of(results))


def problems(record) -> list[str]:
    """What staff should look at for this submission besides its score."""
    found = list(record.sub.problems)
    if record.status != "graded":
        found.append(record.status)
    for flag in flags_of(record.results):  # the harness's flags for staff review
        found.append("no model.py" if flag == "no_model" else text.clean(flag, text.NAME_LIMIT))
    return found


def write_csv(records, path: Path):
    names = test_names(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as f:
        w = csv.writer(f)
        w.writerow(FIXED_COLUMNS + names)
        for r in records:
            scores = {str(t["name"]): t.get("score") for t in tests_of(r.results)}
            s = r.sub
            w.writerow(
                [s.id, s.student, s.email, s.sid, f"{float(r.results.get('score', 0)):g}"]
                + [f"{max_points(r.results):g}", r.status, "; ".join(problems(r))]
                + ["" if scores.get(n) is None else f"{float(scores[n]):g}" for n in names]
            )


# ---------------------------------------------------------------------------------------
# What went wrong, grouped


def failure_text(output: str) -> str:
    """The message without the student's printed lines, on one line."""
    return " ".join(str(output).split(PRINTED)[0].split())


def failure_key(test: dict) -> str:
    """What went wrong in a row, from its record: piece, behaviour, stage, and the error type or
    limit where there is one (the same mistake reads the same whatever the message's wording)."""
    record = record_of(test)
    what = " ".join(str(record[k]) for k in ("piece", "behaviour") if record.get(k)) or str(test.get("name"))
    detail = record.get("error") or record.get("limit") or record.get("cause")
    return f"{what}: {record.get('stage', 'unknown')}" + (f" ({detail})" if detail else "")


def failure_groups(records) -> list[tuple[str, int, list[str], list[str]]]:
    """(what went wrong, submissions, tests, example ids), most common first, for tests not passed."""
    subs, tests = defaultdict(list), defaultdict(dict)
    for r in records:
        for t in tests_of(r.results):
            if t.get("status") == "passed" and float(t.get("score") or 0) >= float(t.get("max_score") or 0):
                continue
            key = failure_key(t)
            if r.sub.id not in subs[key]:
                subs[key].append(r.sub.id)
            tests[key][str(t["name"])] = None
    groups = [(k, len(v), list(tests[k]), v[:5]) for k, v in subs.items()]
    return sorted(groups, key=lambda g: (-g[1], g[0]))


def first_messages(records) -> dict[str, str]:
    """failure_key -> the output of the first row with that key (shown beside the group, never
    used to form it)."""
    said = {}
    for r in records:
        for t in tests_of(r.results):
            if t.get("status") != "passed":
                said.setdefault(failure_key(t), failure_text(t.get("output", "")))
    return said


def limit_rows(records) -> list[tuple[str, str, str, str, str]]:
    """(id, student, test, kind, message) for every test that hit a limit, errored or was not
    measured, and every submission the harness gave no result for."""
    rows = []
    for r in records:
        if r.status != "graded":
            rows.append(
                (
                    r.sub.id,
                    r.sub.student,
                    "(whole grading)",
                    r.status,
                    failure_text(r.results.get("output", "")),
                )
            )
            continue
        for t in tests_of(r.results):
            output = failure_text(t.get("output", ""))
            status = str(t.get("status", ""))
            kinds = [kind] if (kind := limit_kind(t)) else []
            if status not in ("passed", "failed"):
                kinds.insert(0, status)
            if kinds:
                rows.append((r.sub.id, r.sub.student, str(t["name"]), kinds[0], output[:400]))
    return rows


def hit_time_limit(record) -> bool:
    """Whether any part of this grading ran out of time (the machine's fault, possibly)."""
    return any(kind == "time limit" for *_, kind, _ in limit_rows([record]))


def points_lost(records) -> list[tuple[str, float, int, float]]:
    """(test, max points, submissions below max, points lost in all), in the harness's order."""
    lost, below, most = Counter(), Counter(), {}
    for r in records:
        for t in tests_of(r.results):
            name, score, top = str(t["name"]), float(t.get("score") or 0), float(t.get("max_score") or 0)
            most[name] = max(most.get(name, 0.0), top)
            lost[name] += max(0.0, top - score)
            below[name] += score < top
    return [(n, most[n], below[n], lost[n]) for n in test_names(records)]


def speed_figures(records) -> dict[str, list[float]]:
    """Leaderboard values by name (0 means not measured: it failed or was not run)."""
    values = defaultdict(list)
    for r in records:
        for entry in r.results.get("leaderboard") or []:
            if isinstance(entry, dict) and isinstance(entry.get("value"), int | float):
                values[str(entry.get("name"))].append(float(entry["value"]))
    return dict(values)


def summary_text(records, notes) -> str:
    totals = [float(r.results.get("score", 0)) for r in records]
    if not totals:
        return "nothing graded yet"
    top = max(max_points(r.results) for r in records)
    lines = [
        f"{len(records)} graded: median {statistics.median(totals):g} / {top:g}, "
        f"{sum(t >= top for t in totals)} full marks, {sum(t == 0 for t in totals)} zero"
    ]
    flagged = [(r.sub.id, problems(r)) for r in records if problems(r)]
    lines += [f"  {sid}: {'; '.join(p)}" for sid, p in flagged]
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Plots (matplotlib, embedded as PNG) and the page


def _plots():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def _png(plt, fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _histogram(plt, totals, top) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(totals, bins=[x - 0.5 for x in range(int(top) + 2)], color="#4472c4")
    ax.set_xlabel(f"total score (of {top:g})")
    ax.set_ylabel("submissions")
    return _png(plt, fig)


def _lost_chart(plt, lost) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(lost) + 1))
    labels = [
        re.sub(r"\((\w+):[^)]*\)", r"(\1)", n)[:70] for n, *_ in lost
    ]  # "(hidden: other...)" -> "(hidden)"
    ax.barh(labels[::-1], [p for *_, p in lost][::-1], color="#c0504d")
    ax.set_xlabel("points lost, all submissions")
    return _png(plt, fig)


def _speed_chart(plt, figures) -> str:
    fig, axes = plt.subplots(1, len(figures), figsize=(4.5 * len(figures), 3), squeeze=False)
    for ax, (name, values) in zip(axes[0], figures.items()):
        measured = [v for v in values if v > 0]
        ax.hist(measured or [0], bins=15, color="#9bbb59")
        ax.set_title(f"{name}\n({len(values) - len(measured)} not measured)", fontsize=9)
    return _png(plt, fig)


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(x) -> str:
    return html.escape(text.clean(x))  # the upload's words: no surrogate, escape or flood


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
    "vertical-align:top;font-size:90%}th{background:#eee}td.msg{max-width:600px}"
)


def write_report(records, notes, out: Path, diff=None, tests=None) -> Path:
    plt = _plots()
    totals = [float(r.results.get("score", 0)) for r in records]
    top = max((max_points(r.results) for r in records), default=0.0)
    parts = [f"<h1>Grading report: {len(records)} submissions</h1>"]
    parts.append(
        f"<p>Written {time.strftime('%Y-%m-%d %H:%M')}"
        + (f"; tests: public tests of {_e(tests)} only" if tests else "")
        + ".</p>"
    )
    if totals:
        parts.append(
            f"<p>Median {statistics.median(totals):g} / {top:g}, mean {statistics.mean(totals):.1f}; "
            f"{sum(t >= top for t in totals)} full marks, {sum(t == 0 for t in totals)} with zero.</p>"
        )
    seconds = [r.seconds for r in records if r.seconds > 0]
    if seconds:
        parts.append(
            f"<p>Grading took {statistics.median(seconds):.0f} s per submission (median; longest "
            f"{max(seconds):.0f} s), timed when each was graded.</p>"
        )
    flagged = [(r, problems(r)) for r in records if problems(r)]
    parts.append("<h2>Input problems and notes</h2>")
    rows = [(_e(r.sub.id), _e(r.sub.student), _e("; ".join(p))) for r, p in flagged] + [
        ("", "", _e(n)) for n in notes
    ]
    parts.append(_table(["id", "student", "problem"], rows) if rows else "<p>None.</p>")
    if totals:
        parts.append("<h2>Scores</h2>")
        parts.append(_histogram(plt, totals, top) if plt else "")
        lost = points_lost(records)
        parts.append("<h2>Points lost per test</h2>")
        parts.append(_lost_chart(plt, lost) if plt and lost else "")
        parts.append(
            _table(
                ["test", "max", "submissions below max", "points lost"],
                [(_e(n), f"{m:g}", b, f"{p:g}") for n, m, b, p in lost],
            )
        )
        parts.append(
            "<h2>Most common failure messages</h2><p>Numbers are shown as # so that one mistake is one line.</p>"
        )
        groups = failure_groups(records)[:30]
        said = first_messages(records)
        parts.append(
            _table(
                ["submissions", "what went wrong", "tests", "for example", "what the first one was told"],
                [
                    (
                        c,
                        _e(m),
                        _e("; ".join(t)),
                        _e(", ".join(ids)),
                        f'<span class="msg">{_e(said.get(m, "")[:300])}</span>',
                    )
                    for m, c, t, ids in groups
                ],
            )
        )
    limits = limit_rows(records)
    parts.append(
        "<h2>Gradings that hit a limit, errored or were not measured</h2><p>Time limits are wall-clock: "
        "on a busy machine (load average above its cores) they can fail correct code; "
        "<code>--retry-limits</code> grades those submissions again.</p>"
    )
    load = {r.sub.id: "-" if r.load is None else f"{r.load:g}" for r in records}
    parts.append(
        _table(
            ["id", "student", "test", "what", "message", "load average then"],
            [(*(_e(c) for c in row), load[row[0]]) for row in limits],
        )
        if limits
        else "<p>None.</p>"
    )
    figures = speed_figures(records)
    if figures:
        parts.append(
            "<h2>Speed figures (leaderboard)</h2><p>0 means not measured (the test failed or did not run).</p>"
        )
        measured = {name: values for name, values in figures.items() if any(v > 0 for v in values)}
        parts.append(_speed_chart(plt, measured) if plt and measured else "")
        stats = []
        for name, values in figures.items():
            measured = sorted(v for v in values if v > 0)
            cells = ["-"] * 3
            if measured:
                q = statistics.quantiles(measured, n=10) if len(measured) > 1 else measured * 9
                cells = [f"{x:g}" for x in (q[0], statistics.median(measured), q[-1])]
            stats.append((_e(name), len(measured), len(values) - len(measured), *cells))
        parts.append(_table(["figure", "measured", "not measured", "10th pct", "median", "90th pct"], stats))
    if diff is not None:
        from .grade_all_diff import as_html

        parts.append(as_html(diff))
    parts.append("<h2>Every submission</h2>")
    parts.append(
        _table(
            ["id", "student", "email", "total", "status", "results"],
            [
                (
                    _e(r.sub.id),
                    _e(r.sub.student),
                    _e(r.sub.email),
                    f"{float(r.results.get('score', 0)):g}",
                    _e(r.status),
                    f'<a href="results/{_e(r.sub.id)}.json">results.json</a>',
                )
                for r in records
            ],
        )
    )
    if plt is None:
        parts.insert(1, "<p>(matplotlib is not installed: no plots.)</p>")
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grading report</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    path = out / "report.html"
    path.write_text(page, encoding="utf-8", errors="replace")  # a page, whatever it holds
    return path
