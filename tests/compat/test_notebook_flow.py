"""The original demo notebook (aws_demo.ipynb), re-created cell by cell, run through our
library with one line changed: ``from user_client import UserClient, WorkloadManager``
became ``from userclient import UserClient, WorkloadManager``.

Admin cells, then the user's: a tProc v1 ``AveragerProgram`` with generators 0 and 4 and
readouts 0 and 1 (our own loopback program, of the notebook's kind), a
``SweepWorkload(WorkloadManager)`` with one decimated program and a frequency sweep with
``save_raw=True``, ``get_soccfg()``, ``write_progs()`` as a context manager,
``create_work(f, priority="LOW")``, ``wait_until_done(progress=True)``,
``get_results()`` as a context manager, ``read_results(f)``, and the 4-panel figure.

It runs against the embedded queue service, as itself and as the stock protocol
(``qick-queue serve --stock-protocol``), and a board daemon (``qick-supervisor``) on a
simulated board with the real tProc v1 board's soccfg; the board runs with the files that
``add_device`` printed, the user with the config that ``add_user`` printed (an API key: a
Cognito password login of the user is left to the login tests).
"""
from __future__ import annotations

import configparser
import re

import numpy as np
import pytest

from tests.board.conftest import BoardDaemon
from tests.helpers import wait_for

# ---- the notebook's first cell, with the one changed line ----------------------------
from qick import QickConfig  # noqa: E402  (the notebook does `from qick import *`)
from qick.averager_program import AveragerProgram  # noqa: E402
from userclient import UserClient, WorkloadManager  # noqa: E402

N_POINTS = 11                  # the notebook sweeps 1001 points; 11 keep CI quick
F_START, F_STOP = 490.0, 510.0  # across the simulated board's resonance (500 MHz)
F_DECIMATED = 520.0            # off resonance: the full loopback signal
REPS = 200


class LoopbackProgram(AveragerProgram):
    """A constant pulse on each generator, read back by each readout at the same frequency."""

    def initialize(self):
        cfg = self.cfg
        for gen, nqz in zip(cfg["gen_chs"], cfg["nqz"]):
            self.declare_gen(ch=gen, nqz=nqz)
            freq = self.freq2reg(cfg["pulse_freq"], gen_ch=gen, ro_ch=cfg["ro_chs"][0])
            self.set_pulse_registers(ch=gen, style="const", freq=freq, phase=0,
                                     gain=cfg["pulse_gain"],
                                     length=self.us2cycles(cfg["length"], gen_ch=gen))
        for ro in cfg["ro_chs"]:
            self.declare_readout(ch=ro, freq=cfg["pulse_freq"], gen_ch=cfg["gen_chs"][0],
                                 length=self.us2cycles(cfg["length"] + cfg["readout_padding"],
                                                       ro_ch=ro))
        self.synci(200)

    def body(self):
        self.measure(pulse_ch=self.cfg["gen_chs"], adcs=self.ro_chs, pins=[0],
                     adc_trig_offset=self.us2cycles(self.cfg["adc_trig_offset"]),
                     wait=True, syncdelay=self.us2cycles(self.cfg["relax_delay"]))


def noise(raw, length):
    """Radial and azimuthal spread of the single shots, per readout (the notebook's helper,
    in our words): ``raw`` is (readouts, shots, 2)."""
    iq = raw.dot(np.array([1, 1j])) / length
    mean = iq.mean(axis=1)
    turned = iq * np.exp(-1j * np.angle(mean))[:, np.newaxis]
    return turned.real.std(axis=1), turned.imag.std(axis=1)


class SweepWorkload(WorkloadManager):
    def __init__(self, soccfg, start, stop, n_pts):
        self.freqs = np.linspace(start, stop, n_pts)
        self.amps = np.zeros((n_pts, 2))
        self.noises_amp = np.zeros((n_pts, 2))
        self.noises_pha = np.zeros((n_pts, 2))
        self.config = {"gen_chs": [0, 4], "ro_chs": [0, 1], "nqz": [1, 1],
                       "pulse_gain": 30000, "adc_trig_offset": 0.45, "length": 2.0,
                       "readout_padding": -0.1, "relax_delay": 1.0, "reps": REPS}
        self.dec_config = {"pulse_freq": F_DECIMATED, "length": 1.0, "readout_padding": 0.1,
                           "reps": 1, "soft_avgs": 5}
        super().__init__(soccfg)

    def do_stuff(self, make_progs=False, write_progs=False, read_results=False):
        if make_progs:
            prog = LoopbackProgram(self.soccfg, {**self.config, **self.dec_config})
            self.add_program(prog)
        else:
            prog = next(self.prog_iterator)
        if write_progs:
            self.add_decimated(prog)
        if read_results:
            res = next(self.result_iterator)
            self.dec = res["dec"][...]
            self.dec_t = prog.cycles2us(np.arange(self.dec.shape[1]),
                                        ro_ch=self.config["ro_chs"][0])

        for i, f in enumerate(self.freqs):
            self.config["pulse_freq"] = f
            if make_progs:
                prog = LoopbackProgram(self.soccfg, self.config)
                self.add_program(prog)
            else:
                prog = next(self.prog_iterator)
            if write_progs:
                self.add_acquire(prog, save_raw=True)
            if read_results:
                res = next(self.result_iterator)
                avg = res["avg"][...]
                raw = res["raw"][...]
                self.amps[i] = np.abs(avg[:, 0, :].dot(np.array([1, 1j])))
                self.noises_amp[i], self.noises_pha[i] = noise(raw, prog.ro_chs[0]["length"])

    def display(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axs = plt.subplots(4, 1, figsize=(10, 20))
        for ii, iq in enumerate(self.dec):
            ro = self.config["ro_chs"][ii]
            plot = axs[2 * ii]
            plot.plot(self.dec_t, iq[:, 0], label=f"I value, ADC {ro}")
            plot.plot(self.dec_t, iq[:, 1], label=f"Q value, ADC {ro}")
            plot.plot(self.dec_t, np.abs(iq.dot([1, 1j])), label=f"mag, ADC {ro}")
            plot.set_ylabel("a.u.")
            plot.set_xlabel("Time [us]")
            plot.set_title(f"Averages = {self.dec_config['soft_avgs']}")
            plot.legend()
            plot = axs[2 * ii + 1]
            plot.semilogy(self.freqs, self.amps[:, ii], label="mean")
            plot.semilogy(self.freqs, self.noises_amp[:, ii], label="amplitude noise")
            plot.semilogy(self.freqs, self.noises_pha[:, ii], label="phase noise")
            plot.set_ylabel("avg a.u.")
            plot.set_xlabel("Frequency [MHz]")
            plot.set_title(f"Averages = {self.config['reps']}")
            plot.legend()
        return fig


def printed_block(text: str, heading: str) -> configparser.ConfigParser:
    """The INI block printed after ``heading`` (up to the next blank line)."""
    after = text.split(heading, 1)[1].lstrip("\n")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(after.split("\n\n", 1)[0])
    return parser


@pytest.fixture(params=["ours", "stock"])
def queue_service(request, queue_service_factory):
    """Our embedded service, and the same speaking only the stock protocol (no
    ``/capabilities``, no long poll: the client and the board poll)."""
    return queue_service_factory(**({"stock_protocol": True} if request.param == "stock"
                                    else {}))


@pytest.fixture
def admin_home(home, queue_service):
    """``cp ~/.config/qick.conf.admin ~/.config/qick.conf``: the admin's config."""
    (home / ".config" / "qick.conf").write_text(
        f"[service]\napi_endpoint = {queue_service.url}\n"
        f"oauth_endpoint = {queue_service.root}\ncognito_url = {queue_service.root}\n"
        f"[user]\nusername = {queue_service.admin_email}\napi_key = {queue_service.admin_key}\n")
    return home


def test_the_demo_notebook_runs_unchanged(
        admin_home, queue_service, tproc_v1_soccfg, tmp_path, capsys):
    home = admin_home
    # ---- admin cells ------------------------------------------------------------------
    client = UserClient()
    device = client.add_device("QICK Demo Device")
    shown = capsys.readouterr().out
    assert shown.startswith("Device successfully added!\n")
    board_config = printed_block(shown, "Put the following in the config file "
                                        "/etc/qick/config:")
    board_credentials = printed_block(shown, "Put the following in the device credentials "
                                             "file /etc/qick/credentials:")
    assert "the [device] block is needed in the client config as well" in shown
    assert dict(board_config["service"])["api_endpoint"] == queue_service.url
    assert dict(board_config["service"])["oauth_endpoint"] == queue_service.root
    assert dict(board_config["device"]) == {"name": "QICK Demo Device",
                                            "id": device["DeviceId"]}
    assert dict(board_credentials["credentials"]) == {"id": device["ClientId"],
                                                      "secret": device["ClientSecret"]}

    user = client.add_user("name@example.com", "Demo User")
    shown = capsys.readouterr().out
    assert shown.startswith("User successfully added!")
    assert "userclient login" in shown and user["TemporaryPassword"] in shown
    user_config = printed_block(shown, "They should put the following in ~/.config/qick.conf:")
    assert dict(user_config["user"]) == {"username": "name@example.com",
                                         "api_key": user["ApiKey"]}

    # the board starts with the two files add_device printed (and a simulated tProc v1)
    board = BoardDaemon(tmp_path / "board", queue_service,
                        device={"DeviceId": board_config["device"]["id"],
                                "ClientId": board_credentials["credentials"]["id"],
                                "ClientSecret": board_credentials["credentials"]["secret"]},
                        executor={"board": "simulated", "soccfg_json": str(tproc_v1_soccfg),
                                  "seed": "7"},
                        supervisor={"poll_seconds": "0.3"})
    try:
        board.start()
        wait_for(lambda: client.get_device(device["DeviceId"]).DeviceConfigurationUrl, 30,
                 what="the board to upload its soccfg")

        # ---- the user: the config the admin sent, plus the [device] block --------------
        user_config["device"] = dict(board_config["device"])
        with open(home / ".config" / "qick.conf", "w") as f:
            user_config.write(f)
        client = UserClient()

        # ---- the notebook's user cells, as they are ------------------------------------
        soccfg = QickConfig(client.get_soccfg())
        expt = SweepWorkload(soccfg, start=F_START, stop=F_STOP, n_pts=N_POINTS)
        with expt.write_progs() as workloadfile:
            work_id = client.create_work(workloadfile, priority="LOW")
        assert workloadfile.closed           # create_work closes it, as the original does
        client.wait_until_done(work_id, progress=True)
        with client.get_results(work_id) as resultsfile:
            expt.read_results(resultsfile)
        fig = expt.display()
    finally:
        board.cleanup()

    # ---- what it printed and what it read ----------------------------------------------
    progress = capsys.readouterr().out
    assert re.fullmatch(r"(workload is [A-Z]+\.*\n)*workload is DONE\n", progress), progress
    work = client.get_work(work_id)
    assert work["WorkStatus"] == "DONE" and work["Priority"] == "LOW"
    assert work["DeviceId"] == device["DeviceId"]

    dec_prog, sweep = expt.proglist[0], expt.proglist[1:]
    assert expt.dec.shape == (2, dec_prog.ro_chs[0]["length"], 2)
    assert len(sweep) == N_POINTS and expt.dec_t[-1] > 0.9  # a ~1.1 us window, in us
    # the loopback signal: far above the per-sample noise in the decimated trace
    magnitude = np.abs(expt.dec.dot([1, 1j]))
    settled = magnitude[:, magnitude.shape[1] // 2:]
    assert (settled.mean(axis=1) > 10 * settled.std(axis=1)).all()
    # the sweep: both readouts see the resonance dip at 500 MHz, the signal elsewhere
    for ro in range(2):
        assert expt.freqs[np.argmin(expt.amps[:, ro])] == pytest.approx(500.0)
        assert expt.amps[0, ro] > 5 * expt.amps[:, ro].min()
        assert (expt.noises_amp[:, ro] > 0).all() and (expt.noises_pha[:, ro] > 0).all()
        assert (expt.amps[:, ro] > 3 * expt.noises_amp[:, ro]).all()
    # the figure: four panels, three curves each
    assert len(fig.axes) == 4 and all(len(ax.lines) == 3 for ax in fig.axes)
    fig.savefig(tmp_path / "demo.png")
    assert (tmp_path / "demo.png").stat().st_size > 10_000
