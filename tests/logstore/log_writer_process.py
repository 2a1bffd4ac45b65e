"""A stand-in server process: logs records through PredictionLog, then prints its counters.

Run as ``python log_writer_process.py URL WRITER COUNT``; the PostgreSQL tests start
several at once against one database, as several replicas would.
"""

from __future__ import annotations

import asyncio
import json
import sys

from logstore_support import make_record

from keel.logstore import PredictionLog, open_log_store
from keel.settings import LogStoreSettings


async def log_records(url: str, writer: str, count: int) -> dict[str, object]:
    log = PredictionLog(
        open_log_store(url), LogStoreSettings(url=url, flush_interval_s=0.01, batch_records=50)
    )
    await log.start()
    for index in range(count):
        log.add(make_record(index, request_id=f"{writer}-{index}", rows=1))
        if index % 25 == 0:
            await asyncio.sleep(0)  # let the flusher run, as requests would
    await log.close()
    return {"written": log.written, "dropped": log.dropped, "failures": log.write_failures}


if __name__ == "__main__":
    url, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(asyncio.run(log_records(url, writer, count))))
