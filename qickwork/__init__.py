"""The workload and results file formats shared by the user side and the executor.

Imports only qick, numpy, h5py and the standard library (it runs on the board too).
"""
from qickwork.errors import (DeviceError, FirmwareMismatch, IncompleteResults,
                             InvalidResults, InvalidWorkload, WorkloadError, WorkloadTooLarge)
from qickwork.estimate import Estimate, estimate_dump
from qickwork.firmware import describe, fingerprint, tproc_version
from qickwork.results import (ProgramResult, Results, ResultsWriter, read_results,
                              summarize_results)
from qickwork.validate import WorkloadLimits, check_entry, check_workload
from qickwork.workload import (FORMAT_VERSION, AcquireArgs, ProgramEntry, check_firmware,
                               dumps_workload, entry_for, make_program, read_workload,
                               write_workload)

__all__ = ["AcquireArgs", "DeviceError", "Estimate", "FORMAT_VERSION", "FirmwareMismatch",
           "IncompleteResults", "InvalidResults", "InvalidWorkload", "ProgramEntry",
           "ProgramResult", "Results",
           "ResultsWriter", "WorkloadError", "WorkloadLimits", "check_entry",
           "check_firmware",
           "check_workload", "describe", "dumps_workload", "entry_for", "estimate_dump",
           "fingerprint", "make_program", "read_results", "read_workload", "summarize_results",
           "tproc_version",
           "write_workload"]
