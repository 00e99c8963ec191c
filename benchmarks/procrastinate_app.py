"""Procrastinate app for the peer benchmark (PsycopgConnector, async no-op task)."""

import common
import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=common.PG_DSN))


@app.task(name="noop")
async def noop(t_enq):
    common.record(t_enq)
