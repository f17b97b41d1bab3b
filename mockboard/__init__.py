"""A mock device: a simulated QICK board that speaks the ordinary device protocol.

``qick-queue serve`` runs one ``mockboard.worker`` per mock device (``queueservice.
mockfleet``); each workload runs in a ``mockboard.run`` child with a deadline and a memory
limit, on ``executor.runner`` with the simulated board (modelled data).
"""
