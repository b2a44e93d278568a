"""`tandem-cloud worker`: a task-queue consumer (huey) with its lease reaper and the scheduler.

Beside the consumer, two threads: the reaper requeues cloud tasks whose worker
died; the scheduler (cloud/scheduling/placement.py) places again the tasks of
gateways that stopped renewing their leases and moves queued tasks off
overloaded gateways. Several workers may run both: every change is conditional.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable

from tandem.cloud.cli.db import Subparsers
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.scheduling import placement
from tandem.cloud.tasks.queue import TaskQueue, run_reaper


def add_commands(commands: Subparsers, config: argparse.ArgumentParser,
                 load: Callable[[argparse.Namespace], CloudConfig]) -> None:
    """Add the worker command; load reads the --config given."""
    worker = commands.add_parser(
        "worker", parents=[config], help="run task-queue worker processes",
        description="Consume the task queue ([tasks] backend: SQLite or Redis) with [tasks] "
                    "workers processes until SIGINT (finish running tasks) or SIGTERM. Run it "
                    "on as many machines as share the queue and the database.")
    worker.set_defaults(handler=lambda args: _worker(load(args)))


def _worker(config: CloudConfig) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with database.cli_engine(config):
        pass  # the schema is at the code's revision before any task runs
    queue = TaskQueue(config)
    queue.fork_gate.install()  # huey forks workers beside the two threads below
    stop = threading.Event()
    threads = [threading.Thread(target=run_reaper, args=(queue, stop), name="lease-reaper",
                                daemon=True),
               threading.Thread(target=placement.run,
                                args=(placement.Scheduler(config), queue, stop),
                                name="scheduler", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        queue.consumer().run()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return 0
