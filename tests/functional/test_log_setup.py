"""Logging set up by lib/log_setup.py: files in LOG_DIR, safe across processes."""
import datetime
import logging
import re
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path

import pytest

from conf.settings import PROJECT_ROOT
from lib.log_setup import (CONTINUATION_INDENT, LOG_BACKUPS, SETUP_CHATTY_LOGGERS,
                           configure_logging, drop_terminal_styles, split_fixed_messages)

WRITER = """
import logging, sys
from lib.log_setup import configure_logging
configure_logging("shared", sys.argv[1], max_bytes=40_000)
log = logging.getLogger("writer")
for number in range(300):
    log.info("writer %s line %04d %s", sys.argv[2], number, "x" * 40)
"""


def shared_log_lines(tmp_path, script: str, processes: int, least_files: int) -> list[str]:
    """Run ``script`` in several processes logging to one file; return every line written."""
    writers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(n)],
                                cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for n in range(processes)]
    errors = [writer.communicate(timeout=60)[1] for writer in writers]
    assert all(writer.returncode == 0 for writer in writers)
    assert not any("Logging error" in text for text in errors), errors
    files = sorted(tmp_path.glob("shared.log*"))
    assert len(files) >= least_files, "the file must have rolled over"
    return [line for path in files for line in path.read_text().splitlines()]


def test_processes_sharing_one_file_lose_no_line_across_rollovers(tmp_path):
    lines = shared_log_lines(tmp_path, WRITER, processes=4, least_files=3)  # 120 kB, 40 kB files
    written = sorted(line.split("writer: ", 1)[1][:18] for line in lines if "writer: " in line)
    assert written == sorted(f"writer {n} line {m:04d}" for n in range(4) for m in range(300))


THREADED_WRITER = """
import logging, sys, threading
from lib.log_setup import configure_logging
configure_logging("shared", sys.argv[1], max_bytes=20_000)
log = logging.getLogger("writer")
def write(thread):
    for number in range(100):
        log.info("writer %s.%s line %04d %s", sys.argv[2], thread, number, "x" * 40)
threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_threads_of_several_processes_lose_no_line_and_split_none(tmp_path):
    lines = shared_log_lines(tmp_path, THREADED_WRITER, processes=2, least_files=3)  # 75 kB
    assert all(RECORD_START.match(line) and line.endswith("x" * 40) for line in lines), (
        "every line is one whole record")
    written = sorted(line.split("writer: ", 1)[1][:20] for line in lines)
    assert written == sorted(f"writer {n}.{t} line {m:04d}"
                             for n in range(2) for t in range(4) for m in range(100))


def test_rotation_keeps_log_backups_files_of_max_bytes_and_the_newest_lines(tmp_path):
    log_file = configure_logging("rot", str(tmp_path), max_bytes=2_000)
    log = logging.getLogger("writer")
    for number in range(300):  # about 26 kB: thirteen files' worth
        log.info("line %04d %s", number, "x" * 40)
    names = sorted(path.name for path in tmp_path.glob("rot.log*"))
    assert names == ["rot.log", *(f"rot.log.{n}" for n in range(1, LOG_BACKUPS + 1))]
    line_length = len(log_file.read_text().splitlines()[0]) + 1
    for number in range(1, LOG_BACKUPS + 1):
        size = (tmp_path / f"rot.log.{number}").stat().st_size
        assert 2_000 <= size < 2_000 + line_length, "a file turns over once it reaches max_bytes"
    newest_first = [log_file, *(tmp_path / f"rot.log.{n}" for n in range(1, LOG_BACKUPS + 1))]
    kept = [line.split("writer: ", 1)[1][:9]
            for path in reversed(newest_first) for line in path.read_text().splitlines()]
    assert kept == [f"line {m:04d}" for m in range(300 - len(kept), 300)]


def test_console_can_stay_one_line_while_the_file_keeps_the_traceback(tmp_path, capsys):
    log_file = configure_logging("one", str(tmp_path), console_level="WARNING",
                                 console_tracebacks=False)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        logging.getLogger("t").error("it failed", exc_info=exc)
    logging.getLogger("t").info("file only")
    err = capsys.readouterr().err
    assert "it failed" in err and "Traceback" not in err and "file only" not in err
    text = Path(log_file).read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text and "file only" in text


RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}[+-]\d{4} [A-Z]+ [\w.]+: ")
FORGED = "\r\n2026-01-01 00:00:00,000 CRITICAL app.errors: FORGED"


def assert_every_line_is_a_record_or_indented(text: str) -> None:
    for line in text.splitlines():
        assert RECORD_START.match(line) or line.startswith(CONTINUATION_INDENT), repr(line)


def test_control_characters_in_a_message_are_escaped_in_file_and_console(tmp_path, capsys):
    log_file = configure_logging("esc", str(tmp_path))
    hostile = f"/api/x{FORGED}\x1b[2J\x00\x7f\x85\u2028end"
    logging.getLogger("t").info("GET %s 404", hostile)
    err = capsys.readouterr().err
    text = Path(log_file).read_text(encoding="utf-8")
    for output in (err, text):
        assert_every_line_is_a_record_or_indented(output)
        assert ("/api/x\\r\\n2026-01-01 00:00:00,000 CRITICAL app.errors: FORGED"
                "\\x1b[2J\\x00\\x7f\\x85\\u2028end 404") in output
        assert not any(char in output for char in "\r\x1b\x00\x7f\x85\u2028")
        assert output.count("\n") == 1


def test_a_traceback_stays_multi_line_but_cannot_forge_a_record(tmp_path, capsys):
    log_file = configure_logging("tb", str(tmp_path), console_level="WARNING",
                                 console_tracebacks=False)
    try:
        raise ValueError(f"bad value{FORGED}\nsecond line\x1b[31m")
    except ValueError as exc:
        logging.getLogger("t").error("failed on %s", "x\ny", exc_info=exc)
    text = Path(log_file).read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0].endswith("ERROR t: failed on x\\ny")
    assert lines[1] == CONTINUATION_INDENT + "Traceback (most recent call last):"
    assert CONTINUATION_INDENT + "second line\\x1b[31m" in lines
    assert_every_line_is_a_record_or_indented(text)
    assert sum(bool(RECORD_START.match(line)) for line in lines) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "\\n" in err


def test_a_stack_asked_for_stays_in_the_file_indented(tmp_path):
    log_file = configure_logging("stack", str(tmp_path))
    logging.getLogger("t").info("where am I", stack_info=True)
    lines = Path(log_file).read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith("INFO t: where am I")
    assert lines[1] == CONTINUATION_INDENT + "Stack (most recent call last):"
    assert any("in test_a_stack_asked_for_stays_in_the_file_indented" in line for line in lines)
    assert_every_line_is_a_record_or_indented("\n".join(lines))


def test_a_character_utf8_cannot_hold_leaves_a_mark_in_the_file(tmp_path):
    log_file = configure_logging("odd", str(tmp_path))
    logging.getLogger("t").info("skipped %s", "name\udcffd.json")  # an undecodable file name
    assert Path(log_file).read_text(encoding="utf-8").endswith("INFO t: skipped name?d.json\n")


def test_terminal_styles_are_dropped_from_the_loggers_named(tmp_path, capsys):
    log_file = configure_logging("styled", str(tmp_path))
    drop_terminal_styles("styled.server")
    drop_terminal_styles("styled.server")
    server = logging.getLogger("styled.server")
    server.info("\x1b[33mPress CTRL+C to quit\x1b[0m")
    server.info('"%s" %s %s', "\x1b[1mGET / HTTP/1.1\x1b[0m", 200, "-")
    logging.getLogger("styled.other").info("kept \x1b[31mred\x1b[0m")
    text = Path(log_file).read_text()
    assert "INFO styled.server: Press CTRL+C to quit\n" in text
    assert 'INFO styled.server: "GET / HTTP/1.1" 200 -\n' in text
    assert "kept \\x1b[31mred\\x1b[0m" in text, "elsewhere colour codes are escaped, not lost"
    assert text == capsys.readouterr().err.replace("\r", "")


def test_console_quiet_loggers_keep_their_errors_on_the_console(tmp_path, capsys):
    log_file = configure_logging("quiet", str(tmp_path), console_quiet=("noisy",))
    logging.getLogger("noisy.pool").warning("retrying a long request line")
    logging.getLogger("noisy").error("gave up")
    logging.getLogger("noisyneighbour").warning("not a child")
    err = capsys.readouterr().err
    assert "retrying" not in err and "gave up" in err and "not a child" in err
    assert "retrying a long request line" in Path(log_file).read_text()


def test_alembics_plugin_list_at_start_is_left_out_but_its_warnings_kept(tmp_path):
    log_file = configure_logging("start", str(tmp_path))
    assert "alembic.runtime.plugins" in SETUP_CHATTY_LOGGERS
    plugins = logging.getLogger("alembic.runtime.plugins")
    plugins.info("setup plugin alembic.autogenerate.schemas")
    plugins.warning("a plugin failed to load")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade 0003 -> 0004")
    text = Path(log_file).read_text()
    assert "setup plugin" not in text
    assert "a plugin failed to load" in text and "Running upgrade 0003 -> 0004" in text


def test_alembics_plugin_list_is_kept_when_debugging(tmp_path):
    configure_logging("start", str(tmp_path), level="INFO")
    log_file = configure_logging("start", str(tmp_path), level="DEBUG")
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")
    assert "setup plugin alembic.autogenerate.schemas" in Path(log_file).read_text()


def test_a_fixed_multi_line_message_becomes_one_record_per_line(tmp_path):
    log_file = configure_logging("banner", str(tmp_path))
    split_fixed_messages("banner.server")
    split_fixed_messages("banner.server")
    server = logging.getLogger("banner.server")
    server.info("WARNING: This is a development server.\n * Running on http://127.0.0.1:5000")
    server.info("client sent %s", "a\nforged line")
    lines = Path(log_file).read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO banner.server: WARNING: This is a development server.",
        "INFO banner.server:  * Running on http://127.0.0.1:5000",
        "INFO banner.server: client sent a\\nforged line",
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("missed, records", [(50, "50 records"), (1, "1 record")])
def test_a_log_file_that_cannot_be_written_says_so_once_and_again_once_it_can(tmp_path, capsys,
                                                                              missed, records):
    # /dev/full fails every write with ENOSPC, as a full disk does.
    (tmp_path / "full.log").symlink_to("/dev/full")
    log_file = configure_logging("full", str(tmp_path))
    log = logging.getLogger("t")
    for number in range(missed):
        log.info("request %02d", number)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err, "no traceback per record"
    assert err.count("cannot write the log file") == 1
    said = f"ERROR lib.log_setup: cannot write the log file {log_file} (No space left on device)"
    assert said in err
    assert all(f"INFO t: request {number:02d}" in err for number in range(missed)), \
        "stderr keeps all"
    assert_every_line_is_a_record_or_indented(err)

    log_file.unlink()  # the disk has room again
    log.info("after")
    text = log_file.read_text()
    back = (f"WARNING lib.log_setup: the log file {log_file} is written again; {records} "
            "could not be written to it meanwhile")
    assert "INFO t: after" in text and back in text and back in capsys.readouterr().err
    assert_every_line_is_a_record_or_indented(text)  # the new file starts with a record
    log.info("later")
    assert log_file.read_text().count("written again") == 1, "said once, not per record"


def test_a_record_that_cannot_be_formatted_is_a_logging_error_not_a_disk_fault(tmp_path):
    # In a process of its own: pytest's capturing handler would raise the error itself.
    script = ("import logging, sys\n"
              "from lib.log_setup import configure_logging\n"
              "configure_logging('bug', sys.argv[1])\n"
              "logging.getLogger('t').info('count %d', 'not a number')\n"
              "logging.getLogger('t').info('fine')\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True)
    assert "--- Logging error ---" in done.stderr and "TypeError" in done.stderr
    assert "cannot write the log file" not in done.stderr
    text = (tmp_path / "bug.log").read_text()
    assert "INFO t: fine" in text and "written again" not in text


@pytest.mark.parametrize("zone, offset", [("UTC", "+0000"), ("Asia/Kolkata", "+0530"),
                                          ("America/Los_Angeles", "-0800")])
def test_a_line_says_its_local_time_with_the_offset_from_utc(tmp_path, monkeypatch, zone, offset):
    """A run's recorded times are UTC: the offset lets a reader match the log to them."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        log_file = configure_logging("zone", str(tmp_path))
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
        record.created = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC).timestamp()
        record.msecs = 0
        logging.getLogger().handle(record)
    finally:
        monkeypatch.undo()
        time.tzset()
    local = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC).astimezone(
        zoneinfo.ZoneInfo(zone))
    assert Path(log_file).read_text().startswith(
        f"{local:%Y-%m-%d %H:%M:%S},000{offset} INFO t: hello\n")


# A file size limit fails a write past it (EFBIG) as a full disk does (ENOSPC),
# and, unlike a full disk, needs no root and can be lifted again at once.
FILLING = """
import logging, os, resource, signal, sys
from lib.log_setup import configure_logging
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the write past the limit kills the process
log_file = configure_logging("filled", sys.argv[1], console_level="ERROR")
log = logging.getLogger("t")
log.info("before")
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(log_file) + int(sys.argv[2]), hard))
for number in range(3):
    log.info("while full %d", number)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.info("after")
"""


def filled_log_lines(tmp_path, room: int) -> list[str]:
    """Run FILLING with ``room`` bytes left after the first record; return the file's lines."""
    done = subprocess.run([sys.executable, "-c", FILLING, str(tmp_path), str(room)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, "Traceback" in done.stderr) == (0, False)
    assert "cannot write the log file" in done.stderr
    lines = (tmp_path / "filled.log").read_text().splitlines()
    assert not [line for line in lines if "while full" in line]
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}[+-]\d{4} [A-Z]+ [\w.]+: (.*)")
    messages = [match[1] for match in map(record.fullmatch, lines) if match]
    assert messages == [
        "before", "after", f"the log file {tmp_path / 'filled.log'} is written again; 3 records "
                           "could not be written to it meanwhile"]
    return lines


def test_records_a_full_disk_refused_never_reach_the_file_later(tmp_path):
    """The file's buffer kept them: written once there was room, late, and counted missed."""
    lines = filled_log_lines(tmp_path, room=20)
    assert len(lines) == 4, "only the record cut by the full disk is not a line of its own"
    assert lines[2].endswith(": after")


def test_a_full_disk_that_cut_no_record_leaves_no_blank_line(tmp_path):
    assert len(filled_log_lines(tmp_path, room=0)) == 3
