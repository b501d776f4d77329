"""The regrade diff of `make grade-all --against OLD/grades.csv`: who gained or lost points, on
which tests, and why: the stage that decided each row then and now (from the rows' records,
extra_data), with the old and the new message side by side for reading.

Old messages come from OLD/results/<id>.json, written next to the CSV by the earlier run.
Submissions are matched by id, then by email, then by student name (a re-export can give a
resubmission a new id)."""

import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from .grade_all_report import FIXED_COLUMNS, failure_text, record_of, tests_of

EPS = 1e-9


@dataclass
class Change:
    id: str
    student: str
    email: str
    test: str
    old: float | None  # None: the test was not in that grading
    new: float | None
    old_message: str
    new_message: str
    old_stage: str = ""  # the record's stage ("" where the row had none)
    new_stage: str = ""


@dataclass
class Diff:
    against: Path
    changes: list = field(default_factory=list)
    totals: dict = field(default_factory=dict)  # id -> (old total, new total), changed ones only
    only_new: list = field(default_factory=list)  # ids graded now and not then
    only_old: list = field(default_factory=list)  # ids graded then and not now
    same: int = 0
    old_messages_missing: bool = False


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def load_previous(csv_path: Path) -> tuple[list[dict], list[str]]:
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "id" not in columns or "total" not in columns:
            raise ValueError(f"{csv_path} is not a grade-all grades.csv (no id/total columns)")
        return list(reader), [c for c in columns if c not in FIXED_COLUMNS]


def _old_rows(csv_path: Path, sid: str) -> dict[str, dict] | None:
    try:
        results = json.loads((csv_path.parent / "results" / f"{sid}.json").read_text())
    except (OSError, ValueError):
        return None
    return {str(t["name"]): t for t in tests_of(results)}


def _match(record, rows_by: dict) -> dict | None:
    s = record.sub
    for key, value in (("id", s.id), ("email", s.email), ("student", s.student)):
        if value and value in rows_by[key]:
            return rows_by[key][value]
    return None


def regrade_diff(records, against: Path) -> Diff:
    rows, old_tests = load_previous(against)
    rows_by = {k: {r[k]: r for r in rows if r.get(k)} for k in ("id", "email", "student")}
    diff, matched = Diff(against), set()
    for record in records:
        row = _match(record, rows_by)
        if row is None:
            diff.only_new.append(record.sub.id)
            continue
        matched.add(row["id"])
        new_scores = {str(t["name"]): t for t in tests_of(record.results)}
        names = list(new_scores) + [n for n in old_tests if n not in new_scores]
        old_rows = _old_rows(against, row["id"])
        changed = []
        for name in names:
            old = _number(row.get(name))
            new = _number(new_scores[name].get("score")) if name in new_scores else None
            if old is None and new is None or (old is not None and new is not None and abs(old - new) < EPS):
                continue
            if old_rows is None:
                diff.old_messages_missing = True
            old_row = (old_rows or {}).get(name)
            old_msg = failure_text(old_row.get("output", "")) if old_row else ""
            if old_rows is None:
                old_msg = "(old message not kept)"
            new_row = new_scores.get(name)
            new_msg = failure_text(new_row.get("output", "")) if new_row else ""
            stages = [str(record_of(r).get("stage", "")) if r else "" for r in (old_row, new_row)]
            s = record.sub
            changed.append(Change(s.id, s.student, s.email, name, old, new, old_msg, new_msg, *stages))
        old_total, new_total = _number(row.get("total")) or 0.0, float(record.results.get("score", 0))
        if changed or abs(old_total - new_total) > EPS:
            diff.changes += changed
            diff.totals[record.sub.id] = (old_total, new_total)
        else:
            diff.same += 1
    diff.only_old = [r["id"] for r in rows if r["id"] not in matched]
    return diff


def _points(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _delta(old: float | None, new: float | None) -> str:
    return f"{(new or 0.0) - (old or 0.0):+g}"


def write(diff: Diff, out: Path):
    with open(out / "regrade_diff.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                "student",
                "email",
                "test",
                "old_score",
                "new_score",
                "change",
                "old_stage",
                "new_stage",
                "old_message",
                "new_message",
            ]
        )
        for c in diff.changes:
            w.writerow(
                [
                    c.id,
                    c.student,
                    c.email,
                    c.test,
                    _points(c.old),
                    _points(c.new),
                    _delta(c.old, c.new),
                    c.old_stage,
                    c.new_stage,
                    c.old_message,
                    c.new_message,
                ]
            )
    (out / "regrade_diff.md").write_text(as_markdown(diff))


def _headline(diff: Diff) -> str:
    gained = sum(new > old for old, new in diff.totals.values())
    lost = sum(new < old for old, new in diff.totals.values())
    line = (
        f"Regrade against {diff.against}: {gained} gained points, {lost} lost points, "
        f"{len(diff.totals) - gained - lost} changed on tests with the same total, {diff.same} unchanged"
    )
    if diff.only_new:
        line += f"; new (not in the old grades): {', '.join(diff.only_new)}"
    if diff.only_old:
        line += f"; no longer graded: {', '.join(diff.only_old)}"
    if diff.old_messages_missing:
        line += "; old messages not kept (no results/ folder next to the old CSV)"
    return line


def _by_submission(diff: Diff):
    for sid, (old, new) in diff.totals.items():
        yield sid, old, new, [c for c in diff.changes if c.id == sid]


def as_text(diff: Diff) -> str:
    lines = [_headline(diff)]
    for sid, old, new, changes in _by_submission(diff):
        who = changes[0].student if changes else sid
        lines.append(f"  {sid} ({who}): {old:g} -> {new:g} ({_delta(old, new)})")
        for c in changes:
            lines.append(f"    {c.test}: {_points(c.old)} -> {_points(c.new)}")
            lines.append(f"      was: {c.old_message[:160]}")
            lines.append(f"      now: {c.new_message[:160]}")
    return "\n".join(lines)


def as_markdown(diff: Diff) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"# Regrade diff\n\n{_headline(diff)}.\n"]
    for sid, old, new, changes in _by_submission(diff):
        who = f"{changes[0].student} <{changes[0].email}>" if changes and changes[0].email else sid
        lines += [
            f"## {sid}: {old:g} -> {new:g} ({_delta(old, new)}), {who}\n",
            "| test | old | new | old message | new message |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {cell(c.test)} | {_points(c.old)} | {_points(c.new)} | {cell(c.old_message)} | {cell(c.new_message)} |"
            for c in changes
        ]
        lines.append("")
    return "\n".join(lines)


def as_html(diff: Diff) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(c.id)}</td><td>{e(c.student)}</td><td>{e(c.test)}</td><td>{_points(c.old)}</td>"
        f"<td>{_points(c.new)}</td><td>{_delta(c.old, c.new)}</td><td>{e(c.old_message)}</td><td>{e(c.new_message)}</td></tr>"
        for c in diff.changes
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("id", "student", "test", "old", "new", "change", "old message", "new message")
    )
    return f"<h2>Regrade diff</h2><p>{e(_headline(diff))}.</p><table><tr>{head}</tr>{rows}</table>"
