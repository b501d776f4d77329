"""What `make grade-all` grades: the submissions under a path, with who sent them.

Three layouts are read:
  - a folder of files, one per student (alice.py, bob.py: each is uploaded as model.py);
  - a folder of folders, one per student (alice/model.py), each uploaded as it is;
  - Gradescope's "Export Submissions" zip (or that zip unpacked): one folder per submission
    (submission_12345678/) and submission_metadata.yml, which maps each folder to its
    submitters (`:name:`, `:email:`, `:sid:` under `:submitters:`).
Bad input raises InputError with what to do; a doubtful submission is still graded and carries
a note (`problems`) that the report shows.
"""

import hashlib
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

METADATA = "submission_metadata.yml"
IGNORED = ("__MACOSX", "__pycache__", ".DS_Store", "Thumbs.db")
MAX_UNZIPPED_BYTES = 4 * 1024**3  # a class of model.py files is megabytes; refuse a zip bomb


class InputError(Exception):
    """The path cannot be graded as a whole; the message says why and what to pass instead."""


@dataclass
class Submission:
    id: str  # unique and safe as a file name: results/<id>.json
    path: Path  # the file or folder uploaded
    upload_name: str | None = None  # the name a single file gets in the submission folder
    student: str = ""
    email: str = ""
    sid: str = ""
    problems: list = field(default_factory=list)

    def fingerprint(self) -> str:
        """sha256 of what is uploaded (names and bytes): a changed upload is graded again."""
        h = hashlib.sha256()
        if self.path.is_dir():
            files = [(p.relative_to(self.path).as_posix(), p) for p in sorted(self.path.rglob("*"))]
        else:
            files = [(self.upload_name or self.path.name, self.path)]
        for name, p in files:
            if p.is_file() and not p.is_symlink():
                try:
                    data = p.read_bytes()
                except OSError as e:  # graded anyway: the harness run then says what is wrong
                    data = f"unreadable: {e}".encode()
                h.update(name.encode() + b"\0" + data)
        return h.hexdigest()


def _visible(entries) -> list[Path]:
    return sorted(p for p in entries if p.name not in IGNORED and not p.name.startswith("."))


def safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "submission"


def find_submissions(path: Path, unpack_to: Path) -> tuple[list[Submission], list[str]]:
    """(submissions, notes on the batch as a whole). A zip is unpacked into `unpack_to`."""
    if not path.exists():
        raise InputError(f"{path} does not exist: pass a folder of submissions or Gradescope's export zip.")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InputError(
                f"{path} is a file, not a folder or a zip: to grade one file use "
                f"`make grade SUBMISSION={path}`; to grade a class pass the folder that holds the files."
            )
        path = unpack_export(path, unpack_to)
    root = export_root(path)
    if root is not None:
        return _from_export(root)
    entries = _visible(path.iterdir())
    if not entries:
        raise InputError(f"{path} is empty: nothing to grade.")
    return _from_folder(entries), []


def unpack_export(zip_path: Path, target: Path) -> Path:
    """Unpack a Gradescope export into `target` (emptied first), refusing anything odd."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            if not any(Path(n).name == METADATA and "__MACOSX" not in n for n in names):
                raise InputError(
                    f"{zip_path} is not a Gradescope export: it has no {METADATA}. Use the zip from the "
                    "assignment's 'Review Grades' page > 'Export Submissions', or unzip your archive and "
                    "pass the folder (one file or folder per student)."
                )
            if sum(i.file_size for i in infos) > MAX_UNZIPPED_BYTES:
                raise InputError(
                    f"{zip_path} unpacks to more than {MAX_UNZIPPED_BYTES >> 30} GiB: not an export."
                )
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for info in infos:
                parts = Path(info.filename).parts
                if info.is_dir() or "__MACOSX" in parts or stat.S_ISLNK(info.external_attr >> 16):
                    continue
                if info.filename.startswith("/") or ".." in parts:
                    raise InputError(f"{zip_path} holds an unsafe path ({info.filename!r}): not unpacked.")
                dest = target.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as e:
        raise InputError(f"{zip_path} is not a readable zip ({e}).") from None
    return target


def export_root(folder: Path) -> Path | None:
    """The folder holding submission_metadata.yml: `folder` itself or its only sub-folder."""
    if (folder / METADATA).is_file():
        return folder
    children = [p for p in _visible(folder.iterdir()) if p.is_dir()] if folder.is_dir() else []
    if len(children) == 1 and (children[0] / METADATA).is_file():
        return children[0]
    return None


def _from_folder(entries: list[Path]) -> list[Submission]:
    """One submission per entry; a file is uploaded as model.py when it is a .py file."""
    subs = []
    for p in entries:
        if p.is_dir():
            subs.append(Submission(safe_id(p.name), p))
        else:
            upload = "model.py" if p.suffix == ".py" else p.name
            subs.append(Submission(safe_id(p.stem), p, upload_name=upload))
    by_id = {}
    for s in subs:
        by_id.setdefault(s.id, []).append(s)
    for same in by_id.values():
        if len(same) > 1:  # alice.py and alice/, or alice.py and alice.ipynb: grade each, flag both
            names = ", ".join(s.path.name for s in same)
            for s in same:
                s.id = safe_id(s.path.name)
                s.problems.append(
                    f"{len(same)} submissions for {same[0].id} ({names}): each graded; keep one"
                )
    _unique_ids(subs)
    for s in subs:
        s.student = s.student or s.id
    return subs


def _unique_ids(subs: list[Submission]):
    seen = set()
    for s in subs:
        base, n = s.id, 2
        while s.id in seen:
            s.id, n = f"{base}-{n}", n + 1
        seen.add(s.id)


def _from_export(root: Path) -> tuple[list[Submission], list[str]]:
    meta = parse_metadata((root / METADATA).read_text(errors="replace"))
    folders = [p for p in _visible(root.iterdir()) if p.is_dir()]
    notes = [
        f"{root.name}/{p.name} is not a submission folder: ignored"
        for p in _visible(root.iterdir())
        if p.is_file() and p.name != METADATA
    ]
    if not folders:
        raise InputError(f"{root} has {METADATA} but no submission folders: nothing to grade.")
    subs = []
    for folder in folders:
        s = Submission(safe_id(folder.name), folder)
        people = meta.get(folder.name)
        if people is None:
            s.problems.append(f"not in {METADATA}: student unknown")
        else:
            s.student = "; ".join(p.get("name", "") for p in people if p.get("name"))
            s.email = "; ".join(p.get("email", "") for p in people if p.get("email"))
            s.sid = "; ".join(p.get("sid", "") for p in people if p.get("sid"))
        subs.append(s)
    _unique_ids(subs)
    missing = sorted(set(meta) - {p.name for p in folders})
    notes += [f"{name} is listed in {METADATA} but has no folder in the export" for name in missing]
    by_person = {}
    for s in subs:
        for who in filter(None, (s.email or s.student).split("; ")):
            by_person.setdefault(who, []).append(s)
    for who, same in by_person.items():
        if len(same) > 1:
            ids = ", ".join(s.id for s in same)
            for s in same:
                s.problems.append(f"{who} has {len(same)} submissions ({ids}): each graded")
    for s in subs:
        s.student = s.student or s.id
    return subs, notes


# ---------------------------------------------------------------------------------------
# submission_metadata.yml


def parse_metadata(text: str) -> dict[str, list[dict]]:
    """{submission folder: [{"name", "email", "sid"}, ...]}, from Gradescope's YAML (keys are
    Ruby symbols such as `:submitters:`), read with PyYAML. Unknown tags (`!ruby/object:...`)
    are read as plain values; a file that is not YAML is an InputError that says so."""
    import yaml

    try:
        data = _load_yaml(text)
    except yaml.YAMLError as e:
        raise InputError(
            f"{METADATA} is not valid YAML ({e}); fix or remove it to grade without names"
        ) from e
    if not isinstance(data, dict):
        return {}
    meta = {}
    for key, value in data.items():
        value = _strip_colons(value)
        people = value.get("submitters") if isinstance(value, dict) else None
        if isinstance(people, list):
            meta[str(key)] = [
                {k: str(v) for k, v in p.items() if k in ("name", "email", "sid") and v is not None}
                for p in people
                if isinstance(p, dict)
            ]
    return meta


def _load_yaml(text: str):
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def any_tag(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("!", any_tag)
    return yaml.load(text, Loader=Loader)


def _strip_colons(value):
    if isinstance(value, dict):
        return {str(k).lstrip(":"): _strip_colons(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_colons(v) for v in value]
    return value
