"""The workload and results file formats shared by the user side and the executor."""
