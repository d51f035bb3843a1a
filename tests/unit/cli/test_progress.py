"""Progress renderers, the choice between them, and what a user sees through the real CLI."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from rich.console import Console

from cargohold.cli.progress import PlainProgress, make_progress
from cargohold.cli.terminal import RichProgress
from cargohold.cli.units import human_size, short_name
from cargohold.progress import Progress
from clisupport import read_terminal
from imagefactory import ArchiveBuilder

MiB = 1 << 20
DIGEST = "sha256:" + "0123456789abcdef" * 4
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain(interval: float = 2.0) -> tuple[PlainProgress, io.StringIO, FakeClock]:
    stream, clock = io.StringIO(), FakeClock()
    return PlainProgress(stream, interval=interval, clock=clock), stream, clock


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


# -- formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (12, "12 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (450 * MiB, "450.0 MiB"),
        (3 << 30, "3.0 GiB"),
        (5 << 40, "5.0 TiB"),
        (5 << 50, "5120.0 TiB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_short_name() -> None:
    assert short_name(DIGEST) == "sha256:0123456789ab"
    assert short_name("sha256:abc") == "sha256:abc"
    assert short_name("layer.tar") == "layer.tar"
    # docker save's member names: the digest's hex they hold, not 68 characters
    assert short_name("0123456789abcdef" * 4 + "/layer.tar") == "0123456789ab"
    assert short_name("blobs/sha256/" + "0123456789abcdef" * 4) == "0123456789ab"
    assert short_name("a-very-long-member-name-of-no-digest.tar") == "a-very-long-member-name…"


# -- plain ----------------------------------------------------------------------------------


def test_plain_rate_limited_then_final_line() -> None:
    progress, stream, clock = plain()
    progress.start("import", 450 * MiB)
    clock.now += 1.0
    progress.update(50 * MiB)
    assert stream.getvalue() == ""  # not before the interval has passed
    clock.now += 1.0
    progress.update(120 * MiB)
    clock.now += 0.5
    progress.update(150 * MiB)  # within the interval of the line just written
    progress.blob_start(DIGEST, 40 * MiB)
    progress.blob_advance(MiB)
    progress.blob_finish()
    clock.now += 2.0
    progress.update(300 * MiB)
    clock.now += 1.0
    progress.update(450 * MiB)
    progress.finish()
    progress.finish()  # idempotent: no second final line
    assert stream.getvalue().splitlines() == [
        "import: 120.0 MiB of 450.0 MiB (26%), 60.0 MiB/s",
        "import: 300.0 MiB of 450.0 MiB (66%), 72.0 MiB/s",
        "import: 450.0 MiB in 5.5 s, 81.8 MiB/s",
    ]


def test_plain_blob_advance_keeps_the_log_alive() -> None:
    progress, stream, clock = plain()
    progress.start("export", 100 * MiB)
    progress.update(10 * MiB)
    progress.blob_start(DIGEST, 80 * MiB)
    clock.now += 3.0
    progress.blob_advance(5 * MiB)
    assert stream.getvalue() == "export: 10.0 MiB of 100.0 MiB (10%), 3.3 MiB/s\n"


def test_plain_unknown_total() -> None:
    progress, stream, clock = plain()
    progress.start("import", None)
    clock.now += 2.0
    progress.update(4 * MiB)
    clock.now += 2.0
    progress.finish()
    assert stream.getvalue().splitlines() == [
        "import: 4.0 MiB, 2.0 MiB/s",
        "import: 4.0 MiB in 4.0 s, 1.0 MiB/s",
    ]


def test_plain_final_line_short_of_the_total() -> None:
    progress, stream, clock = plain()
    progress.start("import", 10 * MiB)
    progress.update(3 * MiB)
    clock.now += 1.0
    progress.finish()
    assert stream.getvalue() == "import: 3.0 MiB in 1.0 s, 3.0 MiB/s\n"


def test_plain_without_start_writes_nothing() -> None:
    progress, stream, _ = plain()
    progress.update(5)
    progress.blob_start(DIGEST, 5)
    progress.blob_advance(5)
    progress.blob_finish()
    progress.finish()
    assert stream.getvalue() == ""


def test_plain_no_time_passed() -> None:
    progress, stream, _ = plain()
    progress.start("import", 12)
    progress.update(12)
    progress.finish()
    assert stream.getvalue() == "import: 12 B in 0.0 s\n"


# -- rich -----------------------------------------------------------------------------------


def rich_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=100), buf


def test_rich_renders_title_sizes_and_blob_line() -> None:
    console, buf = rich_console()
    progress = RichProgress(console)
    progress.start("import", 450 * MiB)
    progress.update(120 * MiB)
    progress.blob_start(DIGEST, 40 * MiB)
    progress.blob_advance(10 * MiB)
    progress.blob_finish()
    progress.update(450 * MiB)
    progress.finish()
    text = strip_ansi(buf.getvalue())
    assert "import" in text
    assert "450.0 MiB of 450.0 MiB" in text
    assert "100%" in text
    assert "MiB/s" in text or "GiB/s" in text
    # The final state is the last thing drawn, and blob lines are gone from it.
    final = text.rsplit("\r", 1)[-1]
    assert "import" in final
    assert "sha256:" not in final


def test_rich_blob_line_while_running() -> None:
    console, buf = rich_console()
    progress = RichProgress(console)
    progress.start("export", 100 * MiB)
    progress.blob_start(DIGEST, 40 * MiB)
    text = strip_ansi(buf.getvalue())
    assert "sha256:0123456789ab " in text
    assert "0 B of 40.0 MiB" in text
    assert DIGEST not in text
    progress.finish()


def test_rich_shows_a_member_name_literally() -> None:
    """A docker archive's member names reach the blob line: rich markup and terminal controls
    in them are shown, not obeyed."""
    console, buf = rich_console()
    progress = RichProgress(console)
    progress.start("import", 100 * MiB)
    progress.blob_start("[b]x[/]\x1b]0;t\x07", MiB)
    progress.finish()
    raw = buf.getvalue()
    assert "\x1b]0;t" not in raw  # no window title
    assert "[b]x[/]\\x1b]0;t\\x07" in strip_ansi(raw)


def test_plain_escapes_controls() -> None:
    progress, stream, clock = plain()
    progress.start("import \x1b[2J", None)
    clock.now += 1
    progress.finish()
    assert stream.getvalue() == "import \\x1b[2J: 0 B in 1.0 s, 0 B/s\n"


def test_rich_unknown_total_shows_bytes_only() -> None:
    console, buf = rich_console()
    progress = RichProgress(console)
    progress.start("import", None)
    progress.update(3 * MiB)
    progress.finish()
    final = strip_ansi(buf.getvalue()).rsplit("\r", 1)[-1]
    assert "import" in final
    assert "3.0 MiB" in final
    assert " of " not in final
    assert "%" not in final
    assert "━" not in final


def test_rich_finish_is_idempotent_and_safe_without_start() -> None:
    console, buf = rich_console()
    progress = RichProgress(console)
    progress.finish()
    progress.blob_finish()
    assert buf.getvalue() == ""
    progress.start("import", 10)
    progress.update(10)
    progress.finish()
    once = buf.getvalue()
    progress.finish()
    assert buf.getvalue() == once
    # The live display was released: Rich allows one per console, and a new one starts.
    progress.start("export", 10)
    progress.finish()


def test_rich_finish_mid_blob_removes_it() -> None:
    console, buf = rich_console()
    progress = RichProgress(console)
    progress.start("import", 100 * MiB)
    progress.blob_start(DIGEST, 40 * MiB)
    progress.finish()
    final = strip_ansi(buf.getvalue()).rsplit("\r", 1)[-1]
    assert "sha256" not in final
    # A second operation can use the same console afterwards.
    progress.start("export", 5)
    progress.finish()


# -- the choice -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "quiet", "stdout_tty", "stderr_tty", "term", "expected"),
    [
        ("auto", False, True, True, "xterm", RichProgress),
        ("auto", False, False, True, "xterm", RichProgress),
        ("auto", False, True, False, "xterm", Progress),
        ("auto", False, False, False, "xterm", Progress),
        ("auto", False, True, True, "dumb", Progress),
        ("auto", False, True, True, None, RichProgress),
        ("auto", True, True, True, "xterm", Progress),
        ("plain", False, False, False, "xterm", PlainProgress),
        ("plain", False, True, True, "dumb", PlainProgress),
        ("plain", True, True, True, "xterm", Progress),
        ("none", False, True, True, "xterm", Progress),
    ],
)
def test_make_progress(
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    quiet: bool,
    stdout_tty: bool,
    stderr_tty: bool,
    term: str | None,
    expected: type[Progress],
) -> None:
    if term is None:
        monkeypatch.delenv("TERM", raising=False)
    else:
        monkeypatch.setenv("TERM", term)
    progress = make_progress(
        mode,
        quiet=quiet,
        stdout_isatty=stdout_tty,
        stderr_isatty=stderr_tty,
        stream=io.StringIO(),
    )
    assert type(progress) is expected


def test_make_progress_plain_writes_to_the_stream() -> None:
    stream = io.StringIO()
    progress = make_progress("plain", stream=stream)
    progress.start("import", 1)
    progress.update(1)
    progress.finish()
    assert stream.getvalue().startswith("import: 1 B in ")


def test_make_progress_auto_asks_the_real_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under pytest the streams are captured, not terminals.
    monkeypatch.setenv("TERM", "xterm")
    assert type(make_progress("auto", stream=io.StringIO())) is Progress


def test_make_progress_unknown_mode() -> None:
    with pytest.raises(ValueError, match="fancy"):
        make_progress("fancy")
    with pytest.raises(ValueError):
        make_progress("fancy", quiet=True)


# -- through the CLI ------------------------------------------------------------------------


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env["TERM"] = "xterm-256color"
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_INTERACTIVE"):
        env.pop(name, None)
    src = str(Path(__file__).resolve().parents[3] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cargohold", "--root", str(root), *args]


def run_on_pty(args: list[str]) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on one pseudo-terminal; return its exit code and output.

    The master is read until the child's side is closed (EOF, or EIO on Linux), which happens
    when the process exits, so no timing is involved.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=environment(), close_fds=True
        )
    finally:
        os.close(slave)
    output = read_terminal(master, proc)
    return proc.returncode, output


def run_piped(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        args, capture_output=True, stdin=subprocess.DEVNULL, env=environment(), timeout=60
    )


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image with a 40 MiB random layer: larger than the blob threshold, still quick."""
    builder = ArchiveBuilder()
    desc = builder.image(files={"big": os.urandom(40 * MiB)})
    builder.add(desc, name="example.com/big:1")
    return builder.write(tmp_path_factory.mktemp("archive") / "big.tar")


def assert_shows_progress(output: str, title: str) -> None:
    text = strip_ansi(output)
    assert title in text, output
    assert "MiB" in text, output
    assert "%" in text or "━" in text, output


def test_cli_import_on_a_terminal_shows_progress(tmp_path: Path, big_archive: Path) -> None:
    code, output = run_on_pty(command(tmp_path / "root", "image", "import", str(big_archive)))
    assert code == 0, output
    assert_shows_progress(output, "import")
    assert "example.com/big:1" in output


def test_cli_import_in_a_pipe_shows_no_progress(tmp_path: Path, big_archive: Path) -> None:
    proc = run_piped(command(tmp_path / "root", "image", "import", str(big_archive)))
    assert proc.returncode == 0, proc.stderr
    for output in (proc.stdout, proc.stderr):
        assert b"MiB/s" not in output
        assert b"\x1b" not in output
        assert b"\r" not in output
        assert "━".encode() not in output
    assert b"example.com/big:1" in proc.stdout


def test_cli_import_plain_in_a_pipe(tmp_path: Path, big_archive: Path) -> None:
    args = command(tmp_path / "root", "image", "import", "--progress", "plain", str(big_archive))
    proc = run_piped(args)
    assert proc.returncode == 0, proc.stderr
    stderr = proc.stderr.decode()
    assert b"\x1b" not in proc.stderr
    assert b"\r" not in proc.stderr
    final = r"^import: [0-9.]+ MiB in [0-9.]+ s, [0-9.]+ [KMG]iB/s$"
    assert re.search(final, stderr, re.MULTILINE), stderr
    assert "MiB/s" not in proc.stdout.decode()


def test_cli_import_progress_none_on_a_terminal(tmp_path: Path, big_archive: Path) -> None:
    args = command(tmp_path / "root", "image", "import", "--progress", "none", str(big_archive))
    code, output = run_on_pty(args)
    assert code == 0, output
    assert "MiB/s" not in output
    assert "━" not in output


def test_cli_export_on_a_terminal_shows_progress(tmp_path: Path, big_archive: Path) -> None:
    root = tmp_path / "root"
    proc = run_piped(command(root, "image", "import", "-q", str(big_archive)))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out.tar"
    code, output = run_on_pty(command(root, "image", "export", str(out), "example.com/big:1"))
    assert code == 0, output
    assert_shows_progress(output, "export")
    assert out.stat().st_size > 40 * MiB


SCRIPT = """
from cargohold.cli.progress import make_progress
progress = make_progress("auto")
print(type(progress).__name__)
progress.start("import", 450 << 20)
progress.update(120 << 20)
progress.update(450 << 20)
progress.finish()
"""


def test_auto_on_a_real_terminal() -> None:
    """The choice and the display on an actual pty, without depending on the CLI."""
    code, output = run_on_pty([sys.executable, "-c", SCRIPT])
    assert code == 0, output
    assert "RichProgress" in output
    assert "\x1b[" in output  # animated: Rich moves the cursor
    assert_shows_progress(output, "import")
    assert "450.0 MiB of 450.0 MiB" in strip_ansi(output)


def test_auto_in_a_pipe() -> None:
    proc = run_piped([sys.executable, "-c", SCRIPT])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Progress\n"
    assert proc.stderr == b""
