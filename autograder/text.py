"""Text from the upload made safe to show anywhere: results.json, the harness's log, a terminal,
report.html and grades.csv.

An upload controls the text of its exceptions, its printed lines and even its exception
classes' names, and that text reaches every place a grading is shown. Three things break those
places: lone surrogates (valid in a Python str, not encodable as UTF-8: a print or a write_text
raises, and JSON parsers elsewhere reject them), control characters (terminal escapes retitle or
clear a staff terminal; NUL and the like confuse viewers) and sheer size. `clean` replaces the
first by U+FFFD, shows the second as visible `\\xNN` escapes, and cuts the third to a limit with
a note saying how much was cut.
"""

import re
import sys

ROW_LIMIT = 5_000  # characters of one row's output (the longest honest one is ~1,500)
NAME_LIMIT = 300

_SURROGATES = re.compile("[\ud800-\udfff]")
# C0 controls but tab and newline, DEL, and the C1 controls (some terminals obey those too)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value, limit: int = ROW_LIMIT) -> str:
    """`value` as text that encodes as UTF-8, holds no control character but tab and newline,
    and is at most about `limit` characters long."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    text = _SURROGATES.sub("\ufffd", text)
    text = text.replace("\r\n", "\n")
    text = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if cut > 0:
        text += f" [... {cut:,} more characters not shown]"
    return text


def clean_results(results: dict) -> dict:
    """results.json with every text that can hold the upload's words cleaned, in place."""
    if isinstance(results.get("output"), str):
        results["output"] = clean(results["output"])
    extra = results.get("extra_data")
    if isinstance(extra, dict) and isinstance(extra.get("flags"), list):
        extra["flags"] = [clean(f, NAME_LIMIT) for f in extra["flags"]]
    for row in results.get("tests") or []:
        if not isinstance(row, dict):
            continue
        for key, limit in (("output", ROW_LIMIT), ("name", NAME_LIMIT)):
            if key in row:
                row[key] = clean(row[key], limit)
        flags = (row.get("extra_data") or {}).get("flags")
        if isinstance(flags, list):
            row["extra_data"]["flags"] = [clean(f, NAME_LIMIT) for f in flags]
    return results


def safe_stdout() -> None:
    """Printing never raises on text that does not encode (it shows it as escapes instead)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
