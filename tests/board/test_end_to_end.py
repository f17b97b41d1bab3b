"""End to end: submit through the client, the supervisor runs it on the simulated board,
results come back."""
import h5py


def test_submit_run_and_results_come_back(board_factory, workload, tmp_path):
    board = board_factory()
    board.start()
    work_id = board.submit(workload)
    done = board.wait_terminal(work_id)
    assert done.WorkStatus == "DONE", (done, board.log())
    # handed out once: the board's later polls name it in ?Holding= instead of re-taking it
    assert done.Attempts == 1, done
    from cloudqueue.transfer import download_file
    target = tmp_path / "results.h5"
    download_file(done.WorkloadResultUrl, target)
    with h5py.File(target) as f:
        assert "0" in f["data"]
        assert f.attrs["board"] == "simulated"  # the file records a simulated board
    from tests.helpers import wait_for
    # the service has the results a moment before the uploader moves the work to done/
    # (and the supervisor counts it when the uploader tells it, a moment later again)
    status = wait_for(lambda: (lambda s: s if s["spool"]["done"] == 1 and
                               s["counts"]["DONE"] == 1 else None)(board.status()), 10,
                      what="the work in done/ and counted")
    assert status["state"] == "ONLINE"
    assert status["spool"]["done"] == 1 and status["counts"]["DONE"] == 1
    assert board.stop() == 0


def test_a_simulated_board_says_so_where_people_look(board_factory, workload, tmp_path):
    """`userclient devices`/`device` show "(simulated)" (from the heartbeat's health), and
    `show-results` says the data is modelled."""
    from tests.helpers import wait_for
    from userclient.display import device_details, devices_table, results_summary_text
    from qickwork.results import summarize_results
    from cloudqueue.transfer import download_file
    board = board_factory().start()
    item = wait_for(lambda: next((d for d in board.admin.list_devices()
                                  if d.DeviceId == board.device_id and
                                  d.extra.get("Simulated")), None), 10,
                    what="the device listed as Simulated")
    assert "(simulated)" in devices_table([item])
    detail = board.admin.get_device(board.device_id)
    assert detail.extra["Simulated"] is True and detail.Health["Simulated"] is True
    assert "(simulated)" in device_details(detail)
    done = board.wait_terminal(board.submit(workload))
    download_file(done.WorkloadResultUrl, tmp_path / "r.h5")
    summary = summarize_results(tmp_path / "r.h5")
    assert summary["Board"] == "simulated"
    assert "SIMULATED" in results_summary_text(summary)
