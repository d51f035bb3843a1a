"""One worker process of ``test_concurrency.py``: a seeded random mix of store operations.

Run as ``python concurrency_worker.py CONFIG.json``. The config names the store root, the
archives (path and target digest), the worker's number, its seed, the mix of operations (a
weight per kind), how many names it keeps at most, how long to run and where to write the
report. The worker opens its own :class:`cargohold.Store` and, until its deadline, imports
archives under names it owns (``w<N>/...``), tags, removes (which collects), runs gc, exports one
of its images and imports that archive again under another name, and lists and checks. It keeps
the names it expects to exist with their digests, and records every exception (and every answer
that contradicts what it expects) instead of stopping. It never waits for anything itself: the
only waiting is SQLite's wait for the store's write lock inside the library.
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold import Store
from cargohold.oci.references import Reference

#: The operations that need a name of the worker's own.
NEEDS_A_NAME = frozenset({"tag", "remove", "export_reimport"})
#: Workers pick archives from a window of this many neighbours (in the order of the config),
#: which moves on every WINDOW_SECONDS of wall-clock time, the same for all workers: the layers
#: the workers use change over the run, so gc deletes layers that imports then bring back.
WINDOW = 3
WINDOW_SECONDS = 1.5


class Contradiction(Exception):
    """The store answered something the worker's own log says cannot be."""


@dataclass
class Worker:
    store: Store
    number: int
    rng: random.Random
    archives: list[dict[str, Any]]
    scratch: Path
    weights: dict[str, int]
    max_names: int
    started: float
    expected: dict[str, str] = field(default_factory=dict)
    uncertain: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    slowest: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    serial: int = 0
    #: Names the operation in progress may change (no longer known if it fails).
    touching: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"docker.io/w{self.number}/"

    def new_name(self, kind: str) -> str:
        self.serial += 1
        return str(Reference.parse(f"w{self.number}/{kind}:v{self.serial}"))

    def own_name(self) -> str:
        return self.rng.choice(sorted(self.expected))

    def bump(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    # -- operations -------------------------------------------------------------------------

    def op_import(self) -> None:
        phase = int(time.time() / WINDOW_SECONDS)
        which = (phase + self.rng.randrange(WINDOW)) % len(self.archives)
        archive = self.archives[which]
        if self.expected and self.rng.random() < 0.25:
            name = self.own_name()  # over a name it has: unchanged, or updated to another image
        else:
            name = self.new_name(f"img{which}")
        all_platforms = bool(archive["multi"]) and self.rng.random() < 0.5
        if all_platforms:
            self.bump("import_all_platforms")
        self.touching = [name]
        # The archives share one ``created``: over another image, an import keeps the name
        # unless forced, and a forced one moves it (and collects what it left).
        force = self.rng.random() < 0.5
        self.import_as(Path(archive["path"]), name, archive["digest"], all_platforms, force)

    def import_as(
        self,
        path: Path,
        name: str,
        digest: str,
        all_platforms: bool = False,
        force: bool = False,
    ) -> None:
        before = self.expected.get(name)
        want = (
            "created"
            if before is None
            else "unchanged"
            if before == digest
            else "updated"
            if force
            else "kept"
        )
        result = self.store.import_archive(
            path, tags=[name], platforms="all" if all_platforms else (), force=force
        )
        self.bump("blobs_written", result.blobs_written)
        got = [(i.name, str(i.digest), i.action) for i in result.images]
        if want != "kept":
            self.expected[name] = digest
        if got != [(name, digest, want)]:
            raise Contradiction(f"import of {path.name} as {name}: {got}, expected {want}")

    def op_tag(self) -> None:
        source = self.own_name()
        targets = [
            self.own_name() if self.rng.random() < 0.3 else self.new_name("tag")
            for _ in range(self.rng.randint(1, 2))
        ]
        self.touching = targets
        names = self.store.tag(source, targets, force=True)
        for target in targets:
            self.expected[target] = self.expected[source]
        if names != targets:
            raise Contradiction(f"tag {source} -> {targets} gave {names}")

    def op_remove(self) -> None:
        names = self.rng.sample(
            sorted(self.expected), self.rng.randint(1, min(3, len(self.expected)))
        )
        absent = [self.new_name("never")] if self.rng.random() < 0.2 else []
        self.touching = names
        result = self.store.remove(names + absent)
        for name in names:
            del self.expected[name]
        if sorted(result.removed) != sorted(names) or result.missing != absent:
            raise Contradiction(
                f"remove {names + absent}: removed {result.removed}, missing {result.missing}"
            )
        if result.gc is None:
            raise Contradiction(f"remove {names}: no collection ran")
        self.bump("blobs_collected", len(result.gc.removed))

    def op_gc(self) -> None:
        self.bump("blobs_collected", len(self.store.gc().removed))

    def op_export_reimport(self) -> None:
        source = self.own_name()
        digest = self.expected[source]
        target = self.new_name("reimport")
        self.touching = [target]
        out = self.scratch / f"w{self.number}-{self.serial}.tar"
        try:
            exported = self.store.export(out, [source])
            if exported.images != [source]:
                raise Contradiction(f"export of {source} wrote {exported.images}")
            self.import_as(out, target, digest)
        finally:
            out.unlink(missing_ok=True)

    def op_list_check(self) -> None:
        # Every image of the store is listed, other workers' too while they change them.
        listed = {
            info.record.name: str(info.record.digest)
            for info in self.store.list_images()
            if info.record.name.startswith(self.prefix)
        }
        mine = {n: d for n, d in listed.items() if n not in self.uncertain}
        if mine != self.expected:
            lost = sorted(set(self.expected) - set(mine))
            extra = sorted(set(mine) - set(self.expected))
            both = mine.keys() & self.expected.keys()
            wrong = sorted(n for n in both if mine[n] != self.expected[n])
            raise Contradiction(f"list: lost {lost}, unexpected {extra}, wrong digest {wrong}")
        if self.expected:
            bad = [
                f"{r.record.name}: {r.summary()}"
                for r in self.store.check(sorted(self.expected))
                if not r.ok
            ]
            if bad:
                raise Contradiction(f"check: {bad}")

    # -- the loop ---------------------------------------------------------------------------

    def pick(self) -> str:
        kinds = {k: w for k, w in self.weights.items() if w > 0}
        if not self.expected:
            kinds = {k: w for k, w in kinds.items() if k not in NEEDS_A_NAME}
        elif len(self.expected) >= self.max_names and "remove" in kinds:
            return "remove"
        return self.rng.choices(list(kinds), weights=list(kinds.values()))[0]

    def run(self, deadline: float) -> None:
        operations: dict[str, Callable[[], None]] = {
            "import": self.op_import,
            "tag": self.op_tag,
            "remove": self.op_remove,
            "gc": self.op_gc,
            "export_reimport": self.op_export_reimport,
            "list_check": self.op_list_check,
        }
        while time.monotonic() < deadline:
            kind = self.pick()
            self.touching = []
            started = time.monotonic()
            try:
                operations[kind]()
            except Exception as exc:
                self.errors.append(describe(kind, exc, time.monotonic() - self.started))
                # What the failed operation did to its names is unknown: stop expecting them.
                for name in self.touching:
                    self.expected.pop(name, None)
                    self.uncertain.add(name)
                continue
            took = time.monotonic() - started
            self.bump(kind)
            self.seconds[kind] = self.seconds.get(kind, 0.0) + took
            self.slowest[kind] = max(self.slowest.get(kind, 0.0), took)


def describe(kind: str, exc: BaseException, at: float) -> dict[str, Any]:
    return {
        "op": kind,
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": traceback.format_exc(),
        "at": round(at, 3),
    }


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    started = time.monotonic()
    report: dict[str, Any] = {"worker": config["worker"], "errors": []}
    try:
        with Store(config["root"]) as store:
            worker = Worker(
                store,
                int(config["worker"]),
                random.Random(config["seed"]),
                config["archives"],
                Path(config["scratch"]),
                config["weights"],
                int(config["max_names"]),
                started,
            )
            try:
                worker.run(started + float(config["seconds"]))
            finally:
                report.update(
                    expected=worker.expected,
                    uncertain=sorted(worker.uncertain),
                    counts=worker.counts,
                    seconds=worker.seconds,
                    slowest=worker.slowest,
                    errors=worker.errors,
                )
    except Exception as exc:
        report["errors"].append(describe("open", exc, time.monotonic() - started))
    report["elapsed"] = time.monotonic() - started
    Path(config["report"]).write_text(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
