"""Configuration and key files that are not what they should be (break-it report, fix round):
a FIFO, /dev/zero or a symlink to it, a directory, an oversized file, a UTF-8 byte-order mark.
Each is a configuration error (exit 2) that names the file and says what it is; none hangs or
reads without bound."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import card.config
from card.config import ConfigError, Settings, load_settings, read_hex_key_file
from card.piv import ManagementKeyAlgorithm
from tui.cli import EXIT_USAGE, main

MAX_KEY_FILE_BYTES = getattr(card.config, "MAX_KEY_FILE_BYTES", 4096)


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A read that blocks (a FIFO with no writer) fails the test instead of hanging CI."""
    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("hung reading a file")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _odd_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A path of the given kind and the words the error must use."""
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
        return path, "is not a regular file (a FIFO"
    if kind == "dev-zero":
        return Path("/dev/zero"), "is not a regular file (a device)"
    if kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
        return path, "is not a regular file (a device)"
    if kind == "directory":
        path.mkdir()
        return path, "is not a regular file (a directory)"
    if kind == "huge":
        path.write_bytes(b"0" * (MAX_KEY_FILE_BYTES + 2))
        return path, f"is larger than {MAX_KEY_FILE_BYTES} bytes"
    raise AssertionError(kind)


KINDS = ["fifo", "dev-zero", "symlink-to-dev-zero", "directory", "huge"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_management_key_file_that_is_not_a_small_regular_file_is_a_named_error(tmp_path: Path, kind: str) -> None:
    path, words = _odd_file(tmp_path, kind)
    settings = Settings(management_key_source="file", management_key_file=path,
                        management_key_algorithm=ManagementKeyAlgorithm.AES192)
    with pytest.raises(ConfigError) as exc:
        settings.management_key()
    assert str(path) in str(exc.value) and words in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        read_hex_key_file(path, "master key file")
    assert f"master key file {path}" in str(exc.value) and words in str(exc.value)


def test_a_symlink_to_a_regular_key_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.hex").write_text("01" * 24 + "\n")
    (tmp_path / "link.hex").symlink_to(tmp_path / "real.hex")
    settings = Settings(management_key_source="file", management_key_file=tmp_path / "link.hex",
                        management_key_algorithm=ManagementKeyAlgorithm.AES192)
    with settings.management_key() as key:
        assert len(key) == 24


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "symlink-to-dev-zero", "directory"])
def test_a_configuration_file_that_is_not_a_regular_file_says_what_it_is(tmp_path: Path, kind: str, capsys) -> None:  # type: ignore[no-untyped-def]
    path, words = _odd_file(tmp_path, kind)
    assert main(["--config", str(path), "status"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(path) in err and words in err and "not found" not in err


def test_a_fifo_as_config_in_the_environment_does_not_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, words = _odd_file(tmp_path, "fifo")
    monkeypatch.setenv("CARDRENEW_CONFIG", str(path))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert words in str(exc.value)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf[renewal]\nwindow_days = 30\n")
    assert load_settings(path).window_days == 30
