"""`annotate --ray`: the same outputs as a local run on a two-node cluster, a worker killed mid-file, Ctrl-C and
--resume, and bad input.

Ray binds the external interface and probes public DNS unless it runs in a network namespace with only
loopback, so every test that starts Ray runs inside one of its own: ``test_ray_tests_in_own_network_namespace``
re-runs this file with ``unshare -n`` (root) and ``EDGE_APP_RAY_NETNS=1``, where the ``cluster_`` tests run
against a head plus a second node (``ray.cluster_utils.Cluster``) on this machine. The bad-input tests need no
cluster and run directly.
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.cli import main as cli_main
from tests.helpers import count_frames, write_tiny_video

REPO = Path(__file__).resolve().parents[2]
INNER = os.environ.get("EDGE_APP_RAY_NETNS") == "1"  # set when this file runs inside its own network namespace
ENGINE_ENV = "EDGE_APP_RAY_TEST_ENGINE"
inner_only = pytest.mark.skipif(
    not INNER, reason="runs inside the network namespace of test_ray_tests_in_own_network_namespace"
)


def frames_in(jsonl: Path) -> list[int]:
    return [json.loads(s)["frame"] for s in jsonl.read_text().splitlines()]


def complete_lines(jsonl: Path) -> int:
    try:
        return jsonl.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# ------------------------------------------------------------------------------------------ the namespace
def test_ray_tests_in_own_network_namespace(tiny_engine: Path, tmp_path: Path) -> None:
    """Run this file's cluster tests in a fresh network namespace where only loopback is up."""
    if INNER:
        pytest.skip("already inside the namespace")
    pytest.importorskip("ray", reason="Ray is not installed (pip install ray==2.60.0)")
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root with unshare and ip to give Ray a loopback-only network namespace")
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")
    env = {**os.environ, "EDGE_APP_RAY_NETNS": "1", ENGINE_ENV: str(tiny_engine), "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = (
        f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider -x "
        f"--basetemp={tmp_path / 'inner'} {Path(__file__).relative_to(REPO)} -k cluster_"
    )
    r = subprocess.run(
        ["unshare", "-n", "sh", "-c", cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, f"cluster tests failed inside the namespace:\n{tail}"
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], tail


# ------------------------------------------------------------------------------------------ cluster tests
@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> Path:
    """The outer test's tiny engine (no second training run), or this session's own."""
    return Path(os.environ[ENGINE_ENV]) if os.environ.get(ENGINE_ENV) else request.getfixturevalue("tiny_engine")


@pytest.fixture(scope="module")
def cluster():
    """A head for the driver only (no CPUs: no worker lands on it, so any worker's node can be lost) and two
    worker nodes of one CPU each, all on this machine."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


@inner_only
def test_cluster_listens_on_loopback_only(cluster) -> None:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    local = [line.split()[3] for line in out.splitlines() if line.strip()]
    assert local, "Ray listens on nothing?"
    assert all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")) for a in local), out


@inner_only
def test_cluster_outputs_equal_a_local_run(cluster, engine: Path, tmp_path: Path, capsys) -> None:
    d = tmp_path / "in"
    d.mkdir()
    write_tiny_video(d / "a.mp4", frames=30)
    write_tiny_video(d / "b.mp4", frames=18, size=(96, 64))
    write_tiny_video(d / "c.mp4", frames=12)
    common = [str(d), "--engine", str(engine), "--no-progress", "--no-hud", "--batch", "4"]
    assert cli_main(["annotate", *common, "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    assert (
        cli_main(["annotate", *common, "--out", str(tmp_path / "ray"), "--ray", cluster.address, "--workers", "2"]) == 0
    )
    said = capsys.readouterr().out
    assert (
        1 <= said.count("worker on 127.0.0.1 (node ") <= 2
    )  # a worker still starting when the files run out does none
    assert "total: 3 files (3 complete), 60 frames read, 60 written, 0 failed to decode" in said
    for stem, n in (("a", 30), ("b", 18), ("c", 12)):
        local = [json.loads(s) for s in (tmp_path / "local" / f"{stem}.jsonl").read_text().splitlines()]
        ray = [json.loads(s) for s in (tmp_path / "ray" / f"{stem}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in ray] == list(range(n))
        for x, y in zip(local, ray, strict=True):  # timings aside, the same labels in the same order
            assert [lb["class_id"] for lb in x["labels"]] == [lb["class_id"] for lb in y["labels"]]
            np.testing.assert_allclose(
                [lb["score"] for lb in x["labels"]], [lb["score"] for lb in y["labels"]], atol=2e-4
            )
        a, b = (
            cv2.VideoCapture(str(tmp_path / "local" / f"{stem}.mp4")),
            cv2.VideoCapture(str(tmp_path / "ray" / f"{stem}.mp4")),
        )
        for _ in range(n):
            (oa, fa), (ob, fb) = a.read(), b.read()
            assert oa and ob
            assert np.abs(fa.astype(int) - fb.astype(int)).mean() < 2.0  # no HUD: the same drawing of the same labels
        assert not a.read()[0] and not b.read()[0]


def _worker_writing(path: Path) -> int | None:
    """The pid of the process that holds ``path`` open for writing (the Ray worker annotating that file)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == str(path) for fd in (p / "fd").iterdir()):
                return int(p.name)
        except OSError:
            continue
    return None


def _when_lines(jsonl: Path, n: int, act, timeout: float = 120.0) -> threading.Thread:
    """In a thread: once ``jsonl`` holds ``n`` complete lines, call ``act()`` (once)."""

    def run() -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if complete_lines(jsonl) >= n:
                act()
                return
            time.sleep(0.005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@inner_only
def test_cluster_worker_killed_mid_file_every_frame_once(cluster, engine: Path, tmp_path: Path, capsys) -> None:
    n = 400
    video = write_tiny_video(tmp_path / "long.mp4", frames=n, size=(320, 240))
    jl = tmp_path / "out" / "long.jsonl"
    killed: list[tuple[int, int]] = []

    def kill() -> None:
        pid = _worker_writing(jl)
        assert pid is not None
        killed.append((pid, complete_lines(jl)))
        os.kill(pid, 9)

    t = _when_lines(jl, 16, kill)
    code = cli_main(
        [
            "annotate",
            str(video),
            "--engine",
            str(engine),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            "--ray",
            cluster.address,
            "--workers",
            "2",
        ]
    )
    t.join(timeout=1)
    said = capsys.readouterr().out
    assert killed, "the kill never happened"
    assert 0 < killed[0][1] < n, f"the worker was not killed mid-file: {killed}"
    assert code == 0, said
    assert frames_in(jl) == list(range(n))  # every frame exactly once
    assert count_frames(tmp_path / "out" / "long.mp4") == n
    assert "after 1 lost worker" in said and "2 attempts" in said and f"annotated {n} of {n} frames ({n} read" in said
    assert f"worker pid {killed[0][0]} on 127.0.0.1 was lost" in said


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@inner_only
def test_cluster_node_lost_mid_file_every_frame_once(cluster, engine: Path, tmp_path: Path, capsys) -> None:
    import ray._private.ray_constants as rc

    n = 400
    video = write_tiny_video(tmp_path / "long.mp4", frames=n, size=(320, 240))
    jl = tmp_path / "out" / "long.jsonl"
    lost: list[int] = []

    def lose_its_node() -> None:
        raylet = _parent(_worker_writing(jl))  # Ray workers are children of their node's raylet
        node = next(
            nd for nd in cluster.worker_nodes if nd.all_processes[rc.PROCESS_TYPE_RAYLET][0].process.pid == raylet
        )
        lost.append(complete_lines(jl))
        cluster.remove_node(node, allow_graceful=False)  # every process of the node killed at once

    t = _when_lines(jl, 16, lose_its_node)
    try:
        code = cli_main(
            [
                "annotate",
                str(video),
                "--engine",
                str(engine),
                "--out",
                str(tmp_path / "out"),
                "--no-progress",
                "--ray",
                cluster.address,
                "--workers",
                "2",
            ]
        )
        t.join(timeout=1)
    finally:
        cluster.add_node(num_cpus=1)  # back to two worker nodes for the next test
        cluster.wait_for_nodes()
    said = capsys.readouterr().out
    assert lost and 0 < lost[0] < n, f"the node was not lost mid-file: {lost}"
    assert code == 0, said
    assert frames_in(jl) == list(range(n)) and count_frames(tmp_path / "out" / "long.mp4") == n
    assert "after 1 lost worker" in said and "2 attempts" in said


@inner_only
def test_cluster_ctrl_c_then_resume(cluster, engine: Path, tmp_path: Path, capsys) -> None:
    n = 300
    video = write_tiny_video(tmp_path / "in.mp4", frames=n, size=(320, 240))
    out = tmp_path / "o"
    args = [
        "annotate",
        str(video),
        "--engine",
        str(engine),
        "--out",
        str(out),
        "--no-progress",
        "--ray",
        cluster.address,
    ]
    t = _when_lines(out / "in.jsonl", 16, _thread.interrupt_main)  # what Ctrl-C does to the driver
    assert cli_main(args) == 130
    t.join(timeout=1)
    said = capsys.readouterr()
    assert "run again with --resume" in said.err
    k = len(frames_in(out / "in.jsonl"))
    assert 0 < k < n and frames_in(out / "in.jsonl") == list(range(k))
    assert count_frames(out / "in.mp4") == k  # the worker closed its video: playable, the same frames as the lines
    assert cli_main([*args, "--resume"]) == 0
    assert (
        f"annotated {n} of {n} frames ({n} read, 0 failed to decode, {k} carried over by resume"
        in capsys.readouterr().out
    )
    assert frames_in(out / "in.jsonl") == list(range(n)) and count_frames(out / "in.mp4") == n


@inner_only
def test_cluster_input_only_on_the_driver_is_one_sentence_per_file(
    cluster, engine: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from edge_app.annotate.ray import driver as annotate_ray

    video = write_tiny_video(tmp_path / "here.mp4", frames=4)
    real = annotate_ray.make_jobs

    def elsewhere(inputs, outputs, resume):  # as if the driver's path did not exist on the worker's node
        return [
            j.__class__(j.index, j.video + ".not-on-this-node", j.out_video, j.out_jsonl, j.resume)
            for j in real(inputs, outputs, resume)
        ]

    monkeypatch.setattr(annotate_ray, "make_jobs", elsewhere)
    code = cli_main(
        [
            "annotate",
            str(video),
            "--engine",
            str(engine),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
            "--ray",
            cluster.address,
            "--workers",
            "1",
        ]
    )
    said = capsys.readouterr().out
    assert code == 1
    assert (
        "FAILED: input '" in said
        and "is not on node 127.0.0.1; every node must see the inputs at the same path" in said
    )
    assert not (tmp_path / "o" / "here.jsonl").exists()


# ------------------------------------------------------------------------------------------ bad input (no cluster)
def _args(tmp_path: Path, engine: Path, *extra: str) -> list[str]:
    video = write_tiny_video(tmp_path / "in.mp4", frames=2)
    return ["annotate", str(video), "--engine", str(engine), "--out", str(tmp_path / "out"), "--no-progress", *extra]


def test_unreachable_address_names_it_and_ray_start(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install ray==2.60.0)")
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli_main(_args(tmp_path, tiny_engine, "--ray", f"127.0.0.1:{port}")) == 2
    err = capsys.readouterr().err
    assert f"cannot reach a Ray cluster at '127.0.0.1:{port}'" in err and "`ray start --head`" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_ray_not_installed_says_the_install_command(tiny_engine: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert cli_main(_args(tmp_path, tiny_engine, "--ray")) == 2
    err = capsys.readouterr().err
    assert "pip install ray==2.60.0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--ray", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--workers", "2"], "--workers 2 applies only with --ray"),
        (["--ray", "head:port"], "--ray 'head:port' is not a Ray address; use auto or HOST:PORT"),
    ],
)
def test_bad_ray_options_are_one_sentence(
    extra: list[str], match: str, tiny_engine: Path, tmp_path: Path, capsys
) -> None:
    try:
        code = cli_main(_args(tmp_path, tiny_engine, *extra))
    except SystemExit as e:  # argparse's own check of the value
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and not (tmp_path / "out").exists()


def test_an_input_after_ray_is_not_taken_for_an_address(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    other = write_tiny_video(tmp_path / "other.mp4", frames=2)
    assert cli_main([*_args(tmp_path, tiny_engine), "--ray", str(other)]) == 2
    assert "is not a Ray address; it names a file: put the inputs before --ray" in capsys.readouterr().err


def test_missing_input_is_one_sentence_and_writes_nothing(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "out").mkdir()
    keep = tmp_path / "out" / "in.jsonl"
    keep.write_text('{"frame": 0}\n')  # an earlier run's output must survive a bad command
    assert (
        cli_main(
            [
                "annotate",
                str(tmp_path / "nope.mp4"),
                "--engine",
                str(tiny_engine),
                "--out",
                str(tmp_path / "out"),
                "--ray",
            ]
        )
        == 2
    )
    assert "input '" in capsys.readouterr().err and keep.read_text() == '{"frame": 0}\n'


def test_plan_splits_each_nodes_cpus_and_gpus() -> None:
    from edge_app.annotate.ray.cluster import plan_workers

    nodes = [
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 2.0}},
        {"NodeID": "b", "Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"NodeID": "dead", "Alive": False, "Resources": {"CPU": 64.0}},
    ]
    assert plan_workers(nodes, 0) == [("a", {"num_cpus": 2.0}, True), ("b", {"num_cpus": 8.0, "num_gpus": 1.0}, True)]
    assert plan_workers(nodes, 3) == [
        ("a", {"num_cpus": 1.0}, False),
        ("b", {"num_cpus": 8.0, "num_gpus": 1.0}, True),
        ("a", {"num_cpus": 1.0}, False),
    ]


def test_engine_files_ship_models_not_plans(tiny_engine: Path, tmp_path: Path) -> None:
    from edge_app.annotate.ray.worker import engine_files, materialise_engine

    eng = Path(shutil.copytree(tiny_engine, tmp_path / "eng"))
    (eng / "plans").mkdir(exist_ok=True)
    (eng / "plans" / "x.plan").write_bytes(b"gpu-specific")
    files = engine_files(eng)
    assert "meta.json" in files and "model.onnx" in files and not any("plan" in n for n in files)
    copy = materialise_engine(files, "tiny", tmp_path / "node")
    assert (copy / "model.onnx").read_bytes() == (tiny_engine / "model.onnx").read_bytes()


def test_line_counter_follows_appends_and_a_rewrite(tmp_path: Path) -> None:
    from edge_app.video.jsonl import LineCounter

    p = tmp_path / "x.jsonl"
    c = LineCounter(p)
    assert c.count() == 0
    p.write_text("a\nb\npart")
    assert c.count() == 2
    with open(p, "a") as f:
        f.write("ial\nc\n")
    assert c.count() == 4
    tmp = tmp_path / "y"
    tmp.write_text("a\n")
    os.replace(tmp, p)  # resume rewrites the file atomically
    assert c.count() == 1
