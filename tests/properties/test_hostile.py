"""Every archive of the hostile corpus (``tests/support/hostile.py``) is refused cleanly.

Cleanly means: the import raises a :class:`CargoholdError` (never another exception, never a
hang), its message is one line that says what is wrong, and the store is exactly as it was,
down to the ingest directory, the lease rows and the lease lock files. The store is seeded with
one image first, so "unchanged" means something. A subset also goes through the real command
line, for the exit status and the single ``cargohold: error:`` line.
"""

from __future__ import annotations

import multiprocessing
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import hostile
from cargohold import CargoholdError, Store
from cargohold.oci.mediatypes import Descriptor
from cargohold.oci.tree import tree
from cargohold.operations.inspecting import inspect_archive
from clisupport import assert_one_error_line, run, seed
from hostile import CASES, CONTROLS, Case, by_name
from snapshots import snapshot
from streams import pipe_reader
from timelimits import Hung, time_limit

#: The corpus must not shrink unnoticed.
MIN_CASES = 450
#: An in-process import that takes longer than this is a hang (the slowest bomb takes ~2 s).
IN_PROCESS_LIMIT = 60.0
#: The same for cases run in a child process (those that could hang in C code).
ISOLATED_LIMIT = 15.0
#: An error message longer than this floods the terminal (a hostile name echoed whole).
MAX_MESSAGE = 1000
SEED_NAME = "example.com/seed/app:1"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an import did: ``refused`` (a CargoholdError), ``accepted``, ``escaped`` (another
    exception) or ``hung``."""

    kind: str
    error_type: str = ""
    message: str = ""

    def __str__(self) -> str:
        if self.kind == "refused":
            return f"refused with {self.error_type}: {self.message!r}"
        if self.kind == "accepted":
            return f"accepted (imported {self.message})"
        if self.kind == "escaped":
            return f"raised {self.error_type} (not a CargoholdError): {self.message[:300]!r}"
        return f"hung: {self.message}"


def import_in_process(root: Path, path: Path, source: str, kwargs: Mapping[str, Any]) -> Outcome:
    with Store(root) as store:
        try:
            with time_limit(IN_PROCESS_LIMIT):
                if source == "pipe":
                    with pipe_reader(path.read_bytes()) as reader:
                        result = store.import_archive(reader, **kwargs)
                else:
                    result = store.import_archive(path, **kwargs)
        except CargoholdError as exc:
            return Outcome("refused", type(exc).__name__, str(exc))
        except Hung as exc:
            return Outcome("hung", message=str(exc))
        except Exception as exc:
            return Outcome("escaped", type(exc).__name__, str(exc))
    return Outcome("accepted", message=", ".join(i.name for i in result.images))


def _child_import(root: Path, path: Path, kwargs: Mapping[str, Any], answer: Any) -> None:
    try:
        with Store(root) as store:
            result = store.import_archive(path, **kwargs)
    except CargoholdError as exc:
        answer.send(Outcome("refused", type(exc).__name__, str(exc)))
    except BaseException as exc:
        answer.send(Outcome("escaped", type(exc).__name__, str(exc)[:1000]))
    else:
        answer.send(Outcome("accepted", message=", ".join(i.name for i in result.images)))


def import_isolated(root: Path, path: Path, kwargs: Mapping[str, Any]) -> Outcome:
    """The import in a forked child, killed after :data:`ISOLATED_LIMIT` seconds: a hang in C
    code (a regular expression) cannot be interrupted in-process."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child_import, args=(root, path, kwargs, send), daemon=True)
    child.start()
    try:
        if receive.poll(ISOLATED_LIMIT):
            outcome: Outcome = receive.recv()
            return outcome
        return Outcome("hung", message=f"no answer in {ISOLATED_LIMIT:g} s (child killed)")
    finally:
        child.kill()
        child.join()
        receive.close()
        send.close()


def check_refusal(case: Case, outcome: Outcome) -> None:
    assert outcome.kind == "refused", f"{case.name}: {outcome}"
    message = outcome.message
    assert message.strip(), f"{case.name}: empty error message"
    assert "\n" not in message and "\r" not in message, f"{case.name}: {message!r}"
    assert len(message) <= MAX_MESSAGE, f"{case.name}: {len(message)} characters"
    assert re.search(case.expect, message), f"{case.name}: {message!r} !~ {case.expect!r}"


# -- the store --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one image, copied for each case (seeding each afresh is slower)."""
    directory = tmp_path_factory.mktemp("seeded")
    seed(directory / "store", directory, SEED_NAME)
    return directory / "store"


@pytest.fixture
def root(seeded: Path, tmp_path: Path) -> Path:
    target = tmp_path / "store"
    shutil.copytree(seeded, target)
    return target


# -- the corpus -------------------------------------------------------------------------------


def test_corpus_size(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\nhostile corpus: {len(CASES)} cases, {len(CONTROLS)} controls")
    assert len(CASES) >= MIN_CASES
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("control", list(CONTROLS))
def test_control_archive_imports(control: str, root: Path, tmp_path: Path) -> None:
    """The unspoiled archives the cases are made from import: a case fails for its defect."""
    path = tmp_path / "control.tar"
    path.write_bytes(CONTROLS[control]())
    with Store(root) as store:
        result = store.import_archive(path)
        assert result.images
        assert all(check.ok for check in store.check(verify=True))
        assert SEED_NAME in [i.record.name for i in store.list_images()]


def _params() -> Iterator[Any]:
    for case in CASES:
        yield pytest.param(case, "path", id=case.name)
        if "pipe" in case.marks:
            yield pytest.param(case, "pipe", id=f"{case.name}-from-pipe")


@pytest.mark.parametrize(("case", "source"), list(_params()))
def test_hostile_archive_is_refused_and_changes_nothing(
    case: Case, source: str, root: Path, tmp_path: Path
) -> None:
    path = case.build(tmp_path)
    with Store(root) as store:
        before = snapshot(store)
    assert before.images and before.blobs
    if "isolated" in case.marks:
        outcome = import_isolated(root, path, case.kwargs)
    else:
        outcome = import_in_process(root, path, source, case.kwargs)
    with Store(root) as store:
        after = snapshot(store)
    check_refusal(case, outcome)
    assert after == before, f"{case.name}: the store changed"


# -- through the command line -----------------------------------------------------------------

CLI_CASES = [
    "name-dotdot",
    "hardlink-as-layer-blob",
    "symlink-escaping",
    "blob-bytes-mismatch",
    "digest-md5-in-index-json",
    "index-json-duplicate-key",
    "ambiguous-manifest-with-manifests",
    "index-nesting-20",
    next(c.name for c in CASES if c.name.startswith("truncated-at-")),
    "zstd-bomb-ratio",
    "docker-config-path-dotdot",
    "docker-repo-tags-upper-case",
]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_refuses_with_one_line(name: str, root: Path, tmp_path: Path) -> None:
    case = by_name(name)
    assert not case.kwargs, "the CLI subset takes cases without import options"
    path = case.build(tmp_path)
    with Store(root) as store:
        before = snapshot(store)

    for command in (("image", "import"), ("archive", "inspect")):
        line = assert_one_error_line(run(root, *command, str(path)))
        assert "internal error" not in line, line
        assert re.search(case.expect, line), f"{' '.join(command)}: {line!r} !~ {case.expect!r}"

    with Store(root) as store:
        assert snapshot(store) == before


def test_repeated_index_entries_import_and_do_not_unfold(tmp_path: Path) -> None:
    """Indexes may list a manifest more than once (index.json does, once per tag), so a
    graph of indexes that list each other many times is legal; but every view of it must
    show each document once, not every one of its 100**6 paths."""
    archive = tmp_path / "dag.tar"
    archive.write_bytes(hostile.amplifying_dag())
    with Store(tmp_path / "root") as store:
        [image] = store.import_archive(archive).images
        record = store.resolve(image.name)
        nodes = list(
            tree(store.blobs, Descriptor(record.media_type, record.digest, record.size)).walk()
        )
        assert len(nodes) < 1000
        assert sum(1 for n in nodes if n.repeated) == 5 * 99 + 99
        assert all(r.ok for r in store.check())
        assert len(store.inspect(image.name).manifests) == 1
        assert {u.name for c in store.content() for u in c.users} == {image.name}
    report = inspect_archive(archive, tmp_path / "root")
    assert report.importable and report.new_blobs == 0


def test_compressed_docker_layers_are_not_decompressed_to_check_diff_ids(tmp_path: Path) -> None:
    """diff_ids of compressed layers are checked when a layer is unpacked, as in containerd;
    an import keeps layer bytes as they are and does not pay for decompressing them."""
    archive = tmp_path / "docker.tar"
    archive.write_bytes(hostile.gzip_layer_with_wrong_diff_ids())
    with Store(tmp_path / "root") as store:
        assert store.import_archive(archive).images
