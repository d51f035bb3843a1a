"""Parallel transfers stop together: when one fails, or when the command is interrupted,
however many images it moves at once."""

from __future__ import annotations

import io
import signal
import threading

import pytest

from cargohold.errors import TransferCancelled
from cargohold.oci.digests import Digest
from cargohold.oci.mediatypes import Descriptor
from cargohold.operations.pushing import StopsWhenCancelled
from cargohold.operations.transfer import Interruption, run_all, run_in_order

BLOB = Descriptor("application/octet-stream", Digest.of_bytes(b"blob"), 4)


def interrupt_when(ready: threading.Event) -> threading.Thread:
    """A thread that sends this process's main thread SIGINT (Ctrl-C) once *ready* is set."""

    def interrupt() -> None:
        assert ready.wait(timeout=10)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    return thread


def test_an_interrupted_wait_cancels_the_running_transfers() -> None:
    """Ctrl-C while the transfers run: they are told to stop (at their next chunk) before the
    pool waits for them, so the command ends at once rather than when the largest blob is
    through."""
    cancelled, started, finished = threading.Event(), threading.Event(), threading.Event()
    told: list[bool] = []

    def transfer(_: Descriptor) -> None:
        started.set()
        told.append(cancelled.wait(timeout=10))
        finished.set()

    interrupter = interrupt_when(started)
    with pytest.raises(KeyboardInterrupt):
        run_all(transfer, [BLOB], cancelled)
    interrupter.join()
    assert finished.wait(timeout=10)  # the Ctrl-C may land while the pool starts its thread
    assert told == [True]


def test_a_failed_transfer_cancels_the_others_and_is_the_one_raised() -> None:
    cancelled, started = threading.Event(), threading.Event()
    other = Descriptor("application/octet-stream", Digest.of_bytes(b"other"), 5)

    def transfer(desc: Descriptor) -> None:
        if desc is BLOB:
            started.set()
            if cancelled.wait(timeout=10):
                raise TransferCancelled()
            return
        assert started.wait(timeout=10)
        raise OSError("the registry went away")

    with pytest.raises(OSError, match="went away"):
        run_all(transfer, [BLOB, other], cancelled)


def test_a_blob_read_for_an_upload_stops_once_cancelled() -> None:
    cancelled = threading.Event()
    with StopsWhenCancelled(io.BytesIO(b"abcdef"), cancelled) as reader:
        assert reader.read(3) == b"abc"
        cancelled.set()
        with pytest.raises(TransferCancelled):
            reader.read(3)


def test_an_interrupted_command_stops_every_image_and_starts_no_other() -> None:
    """push --all and sync move several images at once, each with its transfers' own stop:
    Ctrl-C sets every one of them, and the images not yet started never start."""
    interruption = Interruption()
    started: list[str] = []
    told: dict[str, bool] = {}
    running, finished = threading.Event(), threading.Event()

    def image(name: str) -> str:
        started.append(name)
        stop = interruption.event()
        running.set()
        told[name] = stop.wait(timeout=10)
        finished.set()
        return name

    interrupter = interrupt_when(running)
    with pytest.raises(KeyboardInterrupt):
        run_in_order(image, ["first", "second", "third"], 2, interruption)
    interrupter.join()
    assert finished.wait(timeout=10)
    assert (started, told) == (["first"], {"first": True})
    assert interruption.event().is_set()  # an image asking after the Ctrl-C is told at once
