"""README's first command imports examples/hello.tar: it must stay what its script builds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cargohold import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _build() -> bytes:
    spec = importlib.util.spec_from_file_location("build_hello", EXAMPLES / "build_hello.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data: bytes = module.build()
    return data


def test_shipped_example_is_what_the_script_builds() -> None:
    assert (EXAMPLES / "hello.tar").read_bytes() == _build()


def test_example_imports_and_lists(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store:
        result = store.import_archive(EXAMPLES / "hello.tar")
        assert [(i.name, i.action) for i in result.images] == [
            ("docker.io/library/hello:latest", "created")
        ]
        [info] = store.list_images()
        assert [str(p) for p in info.platforms] == ["linux/amd64", "linux/arm64"]
