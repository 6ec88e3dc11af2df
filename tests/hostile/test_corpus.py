"""Every case of the hostile corpus through the real `reseg` command and the napari reader, each in its own
process with a time limit, its outcome classified. The suite fails on anything but a clean error (one line,
naming the input) where an error is right and a correct success where a success is.

Run with `-s` to see the outcome table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hostile.corpus import EITHER, ERROR, OUT, SUCCESS, Case, build_corpus

pytestmark = pytest.mark.corpus

CLEAN_ERROR, CORRECT_SUCCESS = "clean error", "correct success"
TIME_LIMIT_S = 120
RESEG = [str(Path(sys.executable).with_name("reseg"))]  # the console script, as a user runs it
# The napari reader in a fresh process: what napari would show (an error notification or layers).
READER = """
import json, sys
import napari_reseg._reader as reader
shown = []
reader.show_error = shown.append
path = sys.argv[1]
read = reader.get_reader(path)
if read is None:
    print(json.dumps({"declined": True}))
else:
    layers = [{"shape": list(d[0].shape), "kind": d[2]} for d in read(path) if d[0] is not None]
    print(json.dumps({"layers": layers, "errors": shown}))
"""


def _environment(folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RESEG_MODEL_DIR": str(folder / "user-models"),
        "NAPARI_CONFIG": str(folder / "napari-settings.yaml"),
    }


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (symbolic links not followed) with its size and modification time."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


def _run(command: list[str], folder: Path) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=TIME_LIMIT_S, cwd=folder, env=_environment(folder)
        )
    except subprocess.TimeoutExpired:
        return None


def run_command_case(case: Case) -> tuple[str, str]:
    """(outcome, detail) of the case's `reseg` command."""
    before = _files(case.folder)
    result = _run(RESEG + case.command(), case.folder)
    after = _files(case.folder)
    new = {name for name in after if name not in before}
    outside = sorted(n for n in new if not n.startswith(("in/", OUT + "/")))
    if result is None:
        return "hang", f"no answer in {TIME_LIMIT_S} s"
    if result.returncode < 0:
        return "crash", f"killed by signal {-result.returncode}"
    if outside:
        return "file outside the target", ", ".join(outside)
    stderr = [line for line in result.stderr.splitlines() if line.strip() and "reseg: warning:" not in line]
    if "Traceback" in result.stderr:
        return "traceback", result.stderr.strip().splitlines()[-1]
    left = sorted(n for n in after if n.startswith(OUT + "/") and ("/." in n or n.split("/")[-1].startswith(".")))
    if left:
        return "partial output", f"temporary files left: {left}"
    if result.returncode == 0:
        if case.expect == ERROR:
            return "wrong success", result.stdout.strip()[-200:]
        problem = case.check(case.inputs, case.output) if case.check else None
        return ("wrong success", problem) if problem else (CORRECT_SUCCESS, result.stdout.strip()[-120:])
    if result.returncode not in (1, 2):
        return "crash", f"exit status {result.returncode}: {result.stderr.strip()[-200:]}"
    changed = sorted(n for n in after if n.startswith(OUT + "/") and before.get(n) != after[n])
    if changed:
        return "partial output", f"a failed command wrote {changed}"
    if result.returncode == 2 and stderr and ": error: " in stderr[-1]:
        stderr = stderr[-1:]  # argparse: its usage lines, then the one line that says what is wrong
    if len(stderr) != 1:
        return "unclear error", " | ".join(stderr)[-300:]
    if case.expect == SUCCESS:
        return "valid input refused", stderr[0]
    return CLEAN_ERROR, stderr[0]


def run_reader_case(case: Case) -> tuple[str, str]:
    """(outcome, detail) of opening the case's input with the napari reader."""
    path = case.inputs / case.reader_input
    result = _run([sys.executable, "-c", READER, str(path)], case.folder)
    if result is None:
        return "hang", f"no answer in {TIME_LIMIT_S} s"
    if result.returncode < 0:
        return "crash", f"killed by signal {-result.returncode}"
    if "Traceback" in result.stderr or result.returncode != 0:
        return "traceback", (result.stderr.strip().splitlines() or ["?"])[-1]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    if answer.get("declined"):
        return (CLEAN_ERROR, "declined") if case.expect != SUCCESS else ("valid input refused", "declined")
    layers, errors = answer["layers"], answer["errors"]
    if errors:
        if len(errors) != 1 or "\n" in errors[0] or case.reader_input.split("/")[0] not in errors[0]:
            return "unclear error", " | ".join(errors)[-300:]
        return ("valid input refused", errors[0]) if case.expect == SUCCESS else (CLEAN_ERROR, errors[0])
    if case.expect == ERROR:
        return "wrong success", f"layers {layers}"
    if case.reader_shape is not None and [layer["shape"] for layer in layers] != [list(case.reader_shape)]:
        return "wrong success", f"layers {layers}, expected one of shape {case.reader_shape}"
    return CORRECT_SUCCESS, f"{layers}"


def acceptable(case: Case, outcome: str) -> bool:
    allowed = {ERROR: {CLEAN_ERROR}, SUCCESS: {CORRECT_SUCCESS}, EITHER: {CLEAN_ERROR, CORRECT_SUCCESS}}
    return outcome in allowed[case.expect]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data_root) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("corpus"), shared_data_root)


def test_the_corpus_is_large_and_varied(corpus):
    assert len(corpus) >= 100
    assert {case.argv[0] for case in corpus} == {"segment", "export"}
    assert sum(case.expect == SUCCESS for case in corpus) >= 20  # unusual but valid files must still work


def test_every_input_gives_a_clean_error_or_a_correct_result(corpus):
    runs = [(case, "reseg " + case.argv[0], run_command_case) for case in corpus]
    runs += [(case, "napari reader", run_reader_case) for case in corpus if case.reader_input]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores
        outcomes = list(pool.map(lambda run: run[2](run[0]), runs))
    rows = [(case, tool, *outcome) for (case, tool, _), outcome in zip(runs, outcomes, strict=True)]
    table = Counter((tool.split()[0] if tool.startswith("reseg") else tool, outcome) for _, tool, outcome, _ in rows)
    print(f"\n{len(corpus)} inputs, {len(rows)} runs")
    for (tool, outcome), count in sorted(table.items()):
        print(f"  {tool:14s} {outcome:24s} {count}")
    failures = [
        f"{case.name} ({tool}, expected {case.expect}): {outcome}: {detail}"
        for case, tool, outcome, detail in rows
        if not acceptable(case, outcome)
    ]
    assert not failures, "\n".join(failures)
