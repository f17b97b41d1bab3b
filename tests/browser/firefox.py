"""Firefox for the portal's browser tests: Debian's ``firefox-esr``, headless, driven over
its own Marionette protocol (``marionette_driver``, Mozilla's client). Playwright's Firefox
is a patched build fetched from Playwright's own servers, and Selenium needs geckodriver,
which Debian does not package: Marionette talks to the stock browser with nothing to
fetch.

``start_firefox()`` answers a ``Firefox``: the browser process and its Marionette session,
in a fresh profile whose preferences turn off whatever reaches past the machine.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from marionette_driver.marionette import Marionette

#: a fresh profile's preferences: the Marionette port, and no updates, telemetry, captive
#: portal checks or first-run pages (the machine has no internet)
PREFS = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "browser.download.useDownloadDir": True,
}


def firefox_binary() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pref(value: object) -> str:
    return "true" if value is True else "false" if value is False else repr(value)


@dataclass
class Firefox:
    process: subprocess.Popen
    client: Marionette
    profile: Path

    def close(self) -> None:
        try:
            self.client.delete_session()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def start_firefox(binary: str, width: int = 1280, height: int = 800) -> Firefox:
    """Firefox headless in a fresh profile, its Marionette session started."""
    port = _free_port()
    profile = Path(tempfile.mkdtemp(prefix="portal-firefox-"))
    prefs = {**PREFS, "marionette.port": port}
    (profile / "user.js").write_text("".join(f'user_pref("{k}", {_pref(v)});\n'
                                             for k, v in prefs.items()))
    process = subprocess.Popen(
        [binary, "--headless", "--marionette", "--no-remote", "--profile", str(profile),
         f"--width={width}", f"--height={height}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Marionette(host="127.0.0.1", port=port, startup_timeout=60)
        client.start_session()
    except BaseException:
        process.kill()
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)
        raise
    return Firefox(process, client, profile)
