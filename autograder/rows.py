"""The parts of a results.json row that every tool shares (the harness, `make grade-all`'s
fallback and report): the stages that can decide a row, and the autograder-error row. No
torch here, so the class-grading tools import it cheaply."""

# What decided a row, in results.json's extra_data (the gates, the class report and the regrade
# diff read this, never the wording of the output).
STAGES = (
    "passed",
    "check_failed",  # the student's code gave a wrong value
    "not_implemented",  # a stub
    "raised",  # the student's code raised
    "import_error",
    "timed_out",  # ran past its limit on a quiet machine
    "crashed",  # the worker died or hit a limit (extra_data's "limit" says which)
    "prerequisite_failed",  # failed, and a piece it uses failed too (verdicts.name_prerequisites)
    "gated",  # passed its check, withheld for lack of its speed confirmation (verdicts.apply_gates)
    "not_measured",  # the machine was too busy to time it: staff re-run it
    "not_run",  # skipped: an earlier row explains why
    "refused",  # the static screen refused the upload (autograder/screen.py): flagged for staff
    "autograder_error",  # the grader failed, not the student's code
)


def flags_of(results) -> list:
    """The grading's flags for staff review (results.json's extra_data.flags): refused,
    not_measured, cleanup failed, autograder_error, no_model."""
    extra = results.get("extra_data") if isinstance(results, dict) else None
    flags = extra.get("flags") if isinstance(extra, dict) else None
    return [f for f in flags if isinstance(f, str)] if isinstance(flags, list) else []


def error_row(message: str) -> dict:
    """The visible 0-point row that says the autograder itself failed."""
    return {
        "name": "Autograder error",
        "score": 0.0,
        "max_score": 0.0,
        "status": "failed",
        "output": message,
        "visibility": "visible",
        "extra_data": {"piece": None, "behaviour": None, "kind": "error", "stage": "autograder_error"},
    }
