"""The README's main job: the whole loop on one machine, with no cloud account and no board.

1. an embedded queue service (``qick-queue init`` + ``serve``) on a free loopback port;
2. the admin adds a user and a device, and writes the board's config and credentials;
3. the board daemon (``qick-supervisor``) starts with a simulated board, uploads its
   configuration and long-polls for work;
4. the user fetches that configuration, compiles a frequency sweep of real qick programs
   against it (one program per frequency, as the original SideQICK demo did), submits it,
   waits with a progress bar and downloads the HDF5 results;
5. a summary is printed and a plot of the resonance written (PNG).

Everything runs as real processes talking real HTTP and ZeroMQ; all of it stops at the end.
Usage: ``python demo/run_demo.py [--out DIR] [--points N]`` (``make demo`` runs it).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
RESONATOR_MHZ = 500.0          # the simulated board's resonator (executor.simboard.Resonator)


class DemoError(Exception):
    """Something in the loop did not come up; the message says which part."""


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


class Processes:
    """The demo's child processes, stopped in reverse order however the demo ends."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.children.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with {proc.returncode}; "
                                f"see {self.logs / (name + '.log')}")

    def stop_all(self) -> None:
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_queue(procs: Processes, work: Path) -> tuple[str, str]:
    data = work / "queue"
    subprocess.run([str(BIN / "qick-queue"), "init", "--data", str(data)], check=True,
                   stdout=subprocess.DEVNULL)
    port_file = work / "queue.port"
    procs.start("queue", [str(BIN / "qick-queue"), "serve", "--data", str(data),
                          "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)])
    port = wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 30,
                    "the queue service to listen")
    from cloudqueue.config import read_ini
    admin_key = read_ini(data / "admin.conf")["user"]["api_key"]
    return f"http://127.0.0.1:{port}", admin_key


def write_private(path: Path, text: str) -> None:
    from cloudqueue.config import write_private as _write
    _write(path, text)


def client_for(url: str, api_key: str, conf: Path):
    from userclient import UserClient
    write_private(conf, f"[service]\napi_endpoint = {url}\noauth_endpoint = {url}\n"
                        f"cognito_url = {url}\n\n[user]\napi_key = {api_key}\n")
    return UserClient.from_config(conf, out=None)  # the demo prints its own lines


def start_board(procs: Processes, work: Path, admin, run_dir: Path) -> str:
    device = admin.add_device("demo-board (simulated ZCU216, tProc v2)")
    config, credentials = admin.board_files(device)
    board_conf, board_creds = work / "board.conf", work / "board.credentials"
    write_private(board_conf, config + f"""
[supervisor]
health = 127.0.0.1:0
spool = {work / 'spool'}
run_dir = {run_dir}
long_poll_seconds = 20

[executor]
board = simulated
board_name = zcu216-v2
seed = 7
network_isolation = no
lock_file = {run_dir / 'board.lock'}
deadline_seconds = 300
""")
    write_private(board_creds, credentials)
    procs.start("board", [str(BIN / "qick-supervisor"), "--config", str(board_conf),
                          "--credentials", str(board_creds)])
    return device["DeviceId"]


def build_sweep(soccfg: dict, points: int):
    from qick import QickConfig
    from qick.asm_v2 import AveragerProgramV2
    from userclient.workload import WorkloadManager

    class ReadoutAt(AveragerProgramV2):
        """A pulse on generator 0 and a readout at the same frequency."""

        def _initialize(self, cfg):
            self.declare_gen(ch=0, nqz=1)
            self.declare_readout(ch=0, length=1.0)
            self.add_readoutconfig(ch=0, name="ro", freq=cfg["freq"], gen_ch=0)
            self.add_pulse(ch=0, name="probe", style="const", length=0.5,
                           freq=cfg["freq"], phase=0, gain=0.5)

        def _body(self, cfg):
            self.send_readoutconfig(ch=0, name="ro", t=0)
            self.pulse(ch=0, name="probe", t=0)
            self.trigger(ros=[0], t=0.1)

    qcfg = QickConfig(soccfg)
    wm = WorkloadManager(qcfg)
    freqs = np.linspace(RESONATOR_MHZ - 40, RESONATOR_MHZ + 40, points)
    for f in freqs:
        wm.add(ReadoutAt(qcfg, reps=100, final_delay=1.0, cfg={"freq": float(f)}),
               rounds=1)
    return wm, freqs


def plot(freqs, mags, found: float, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("    (matplotlib is not installed: no plot; pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(freqs, mags, ".-", ms=3)
    ax.axvline(found, color="C3", ls="--", label=f"minimum at {found:.2f} MHz")
    ax.set_xlabel("readout frequency (MHz)")
    ax.set_ylabel("|IQ| (ADC units)")
    ax.set_title("Resonator spectroscopy through the queue (simulated board)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def run(out: Path, points: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="qick-demo-"))
    run_dir = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp"))   # short: ipc paths < 100
    procs = Processes(out)
    try:
        step("starting the embedded queue service")
        url, admin_key = start_queue(procs, work)
        print(f"    {url} (data in {work / 'queue'})")
        admin = client_for(url, admin_key, work / "admin.conf")

        step("admin: adding a user and a device")
        user = admin.add_user("researcher@example.org", "Demo Researcher")
        print(f"    user {user['Email']}, API key shown once: {user['ApiKey'][:6]}…")
        device_id = start_board(procs, work, admin, run_dir)
        print(f"    device {device_id}")

        step("board: qick-supervisor with a simulated board, waiting for its configuration")
        researcher = client_for(url, user["ApiKey"], work / "user.conf")

        def config_uploaded():
            procs.check_alive()
            return researcher.get_device(device_id).ConfigurationLastRefreshed

        wait_for(config_uploaded, 60, "the board to upload its configuration")
        soccfg = researcher.get_soccfg(device_id, save_to=out / "soccfg.json")
        print(f"    board {soccfg.get('board')}, tProc {soccfg['tprocs'][0]['type']}; "
              f"status {researcher.get_device(device_id).DeviceStatus}")

        step(f"user: compiling a {points}-point frequency sweep against the board's config")
        wm, freqs = build_sweep(soccfg, points)
        est = wm.estimate()
        print(f"    {len(freqs)} programs, estimated board time {est.seconds:.3f} s")

        step("user: submitting and waiting")
        from userclient.display import WaitDisplay
        started = time.monotonic()
        work_id = wm.submit(researcher, device_id, "HIGH", name="demo-sweep")
        print(f"    work {work_id}")
        display = WaitDisplay(sys.stdout, sys.stdout.isatty())
        final = researcher.wait_until_done(
            work_id, timeout=300, interval=1,
            on_progress=lambda w: display.update(w, time.monotonic() - started))
        display.close()
        if final.WorkStatus != "DONE":
            raise DemoError(f"the workload ended {final.WorkStatus}: {final.ErrorMessage}")
        results_path = out / "results.h5"
        researcher.download_results(work_id, results_path)
        elapsed = time.monotonic() - started

        step("results")
        mags = []
        for prog, result in wm.read_results(results_path):
            iq = result.avg[0]
            mags.append(float(np.abs(iq[..., 0] + 1j * iq[..., 1]).mean()))
        mags = np.array(mags)
        found = float(freqs[int(np.argmin(mags))])
        print(f"    {len(mags)} programs came back in {elapsed:.1f} s "
              f"(board time {final.DeviceSeconds or 0:.2f} s)")
        print(f"    resonance found at {found:.2f} MHz (the simulated resonator is at "
              f"{RESONATOR_MHZ:.2f} MHz); depth {mags.max() / mags.min():.1f}x")
        print(f"    results: {results_path}")
        if plot(freqs, mags, found, out / "resonance.png"):
            print(f"    plot: {out / 'resonance.png'}")
        if abs(found - RESONATOR_MHZ) > 2 * (freqs[1] - freqs[0]):
            raise DemoError(f"the resonance was found at {found:.2f} MHz, "
                            f"not near {RESONATOR_MHZ} MHz")
        print("DEMO OK")
        return 0
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"),
                        help="where results, the plot and the logs go (default ./demo-out)")
    parser.add_argument("--points", type=int, default=201, help="sweep points (default 201)")
    args = parser.parse_args(argv)
    return run(args.out, args.points)


if __name__ == "__main__":
    sys.exit(main())
