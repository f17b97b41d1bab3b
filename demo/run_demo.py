"""The README's main job: the whole loop on one machine, with no cloud account and no board.

1. an embedded queue service (``qick-queue init`` + ``serve``) on a free loopback port;
2. the admin adds a user and a device, and writes the board's config and credentials;
3. the board daemon (``qick-supervisor``) starts with a simulated board, uploads its
   configuration and long-polls for work;
4. the user fetches that configuration, compiles a frequency sweep of real qick programs
   against it (one program per frequency, as the original SideQICK demo did), submits it,
   waits with a progress bar and downloads the HDF5 results;
5. the resonance is fitted (a Lorentzian dip, ``demo/resonance_fit.py``), a summary
   printed and a plot written (PNG): magnitude with the fit, phase beside it, reps and
   work id on it.

Everything runs as real processes talking real HTTP and ZeroMQ; all of it stops at the end.
Usage: ``python demo/run_demo.py [--out DIR] [--points N]`` (``make demo`` runs it).
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resonance_fit import FitError, Resonance, fit_resonance  # noqa: E402  (demo/)

BIN = Path(sys.executable).parent
RESONATOR_MHZ = 500.0          # the simulated board's resonator (executor.simboard.Resonator)
RESONATOR_FWHM_MHZ = 2.0       # and its linewidth (kappa)
SPAN_MHZ = 40.0                # the coarse sweep: RESONATOR_MHZ +- SPAN_MHZ
DENSE_SPAN_MHZ = 5.0           # the dense part around the expected resonance: +- this
REPS = 100                     # shots averaged per frequency


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


def write_atomically(path: Path, text: str) -> None:
    from cloudqueue.config import write_atomically as _write
    _write(path, text)


def client_for(url: str, api_key: str, conf: Path):
    from userclient import UserClient
    write_atomically(conf, f"[service]\napi_endpoint = {url}\noauth_endpoint = {url}\n"
                           f"cognito_url = {url}\n\n[user]\napi_key = {api_key}\n")
    return UserClient.from_config(conf, out=None)  # the demo prints its own lines


def start_board(procs: Processes, work: Path, admin, run_dir: Path) -> str:
    device = admin.add_device("demo-board (simulated ZCU216, tProc v2)")
    config, credentials = admin.board_files(device)
    board_conf, board_creds = work / "board.conf", work / "board.credentials"
    write_atomically(board_conf, config + f"""
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
    write_atomically(board_creds, credentials)
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
    freqs = sweep_frequencies(points)
    for f in freqs:
        wm.add(ReadoutAt(qcfg, reps=REPS, final_delay=1.0, cfg={"freq": float(f)}),
               rounds=1)
    return wm, freqs


def sweep_frequencies(points: int) -> np.ndarray:
    """``points`` frequencies: half a coarse sweep over +- SPAN_MHZ (to see the baseline
    and find a resonance that is not where expected), half dense over +- DENSE_SPAN_MHZ
    around the expected resonance (so the dip, a few MHz wide, gets many points)."""
    coarse = np.linspace(RESONATOR_MHZ - SPAN_MHZ, RESONATOR_MHZ + SPAN_MHZ,
                         points - points // 2)
    dense = np.linspace(RESONATOR_MHZ - DENSE_SPAN_MHZ, RESONATOR_MHZ + DENSE_SPAN_MHZ,
                        points // 2 + 2)[1:-1]   # its ends: not on the coarse points
    freqs = np.unique(np.round(np.concatenate([coarse, dense]), 9))
    return freqs if freqs.size == points else np.linspace(coarse[0], coarse[-1], points)


def plus_minus(value: float, error: float) -> str:
    """``value ± error`` with the error to two significant digits."""
    decimals = 3 if not error > 0 else max(0, 1 - int(np.floor(np.log10(error))))
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def plot(freqs: np.ndarray, iq: np.ndarray, fit: Resonance, work_id: str,
         path: Path) -> bool:
    """The whole sweep; the dip's magnitude with the fit and its phase, side by side;
    reps, points and work id in the title."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("    (matplotlib is not installed: no plot; pip install 'qick-queue[plot]')")
        return False
    fig, (all_ax, mag_ax, phase_ax) = plt.subplots(
        1, 3, figsize=(14, 4.4), gridspec_kw={"width_ratios": [1, 1.2, 1.2]})
    mags = np.abs(iq)
    all_ax.plot(freqs, mags, ".", ms=3)
    all_ax.set_title("the whole sweep")
    near = (fit.f0 - 6 * fit.fwhm, fit.f0 + 6 * fit.fwhm)
    all_ax.axvspan(*near, color="C1", alpha=0.15, lw=0, label="shown on the right")
    all_ax.legend(loc="lower left", fontsize=8)
    dense = np.linspace(*near, 2000)
    zoom = (freqs >= near[0]) & (freqs <= near[1])
    mag_ax.plot(freqs[zoom], mags[zoom], ".", ms=4, label="measured")
    mag_ax.plot(dense, fit.magnitude(dense), "-", color="C3", lw=1,
                label=f"Lorentzian fit of |IQ|²\nf0 = {plus_minus(fit.f0, fit.f0_err)} MHz\n"
                      f"linewidth (FWHM) = {plus_minus(fit.fwhm, fit.fwhm_err)} MHz")
    mag_ax.set_title(f"magnitude around the resonance ({zoom.sum()} points)")
    mag_ax.legend(loc="center right", fontsize=8)
    # the cable's delay turns the phase linearly with frequency: remove the line fitted
    # to the points away from the dip, so the resonance's own phase shows
    phase = np.unwrap(np.angle(iq))
    away = np.abs(freqs - fit.f0) > 5 * fit.fwhm
    if away.sum() >= 2:
        phase = phase - np.polyval(np.polyfit(freqs[away], phase[away], 1), freqs)
    phase_ax.plot(freqs[zoom], phase[zoom], ".", ms=4, color="C2")
    phase_ax.set_title("phase around the resonance")
    phase_ax.set_ylabel("phase, cable delay removed (rad)")
    for ax in (all_ax, mag_ax, phase_ax):
        ax.set_xlabel("readout frequency (MHz)")
        ax.axvline(fit.f0, color="C3", ls="--", lw=0.7)
    for ax in (all_ax, mag_ax):
        ax.set_ylabel("|IQ| (ADC units)")
    fig.suptitle(f"Resonator spectroscopy through the queue (simulated board): "
                 f"{len(freqs)} frequencies x {REPS} reps, work {work_id}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
        print(f"    {len(freqs)} programs of {REPS} reps, estimated board time "
              f"{est.seconds:.3f} s ({est.seconds - est.overhead_seconds:.3f} s in the "
              f"programs + {est.overhead_seconds:.3f} s executor overhead)")

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
        iq = []
        for prog, result in wm.read_results(results_path):
            avg = np.asarray(result.avg[0])
            iq.append(complex((avg[..., 0] + 1j * avg[..., 1]).mean()))
        iq = np.array(iq)
        print(f"    {len(iq)} programs came back in {elapsed:.1f} s "
              f"(board time {final.DeviceSeconds or 0:.2f} s; estimated {est.seconds:.2f} s)")
        try:
            fit = fit_resonance(freqs, np.abs(iq))
        except FitError as exc:
            raise DemoError(f"no resonance could be fitted: {exc}") from None
        print(f"    resonance fit: f0 = {plus_minus(fit.f0, fit.f0_err)} MHz, linewidth "
              f"(FWHM) {plus_minus(fit.fwhm, fit.fwhm_err)} MHz (the simulated resonator: "
              f"{RESONATOR_MHZ:.3f} MHz, {RESONATOR_FWHM_MHZ:.3f} MHz)")
        print(f"    results: {results_path}")
        if plot(freqs, iq, fit, work_id, out / "resonance.png"):
            print(f"    plot: {out / 'resonance.png'}")
        if abs(fit.f0 - RESONATOR_MHZ) > max(5 * fit.f0_err, 0.05):
            raise DemoError(f"the resonance was fitted at {fit.f0:.3f} MHz, "
                            f"not at {RESONATOR_MHZ} MHz")
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
