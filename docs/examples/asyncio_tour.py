"""
A domain's life on a simulated host, through txlibxl on a plain asyncio
loop (no Twisted reactor).

Run it with ``.venv/bin/python docs/examples/asyncio_tour.py``.
"""
import asyncio
import sys

from txlibxl.context import Context, OperationCancelled
from txlibxl.testing.asyncio_host import simulated_host


async def tour(ctx, host):
    dom = await host.control.create_domain(name="web1", disks=[{"vdev": "xvda"}])
    domid = dom["domid"]
    watch = ctx.watch_domain(domid)

    # An operation is an asyncio.Future: await it.
    await ctx.shutdown(domid)
    print(await watch.when_shutdown())
    await ctx.destroy(domid)
    print(await watch.when_dead())

    # Cancelling the future (or the task awaiting it) aborts the operation
    # in libxl; `settled` says later whether libxl completed it anyway.
    dom = await host.control.create_domain(name="stubborn")
    await host.control.fault("guest_ignore_shutdown", domid=dom["domid"])
    shutdown = ctx.shutdown(dom["domid"])
    await host.control.ping()  # libxl now waits for the guest
    shutdown.cancel()
    try:
        await shutdown
    except OperationCancelled as cancelled:
        print("cancelled; libxl completed it anyway:", await cancelled.settled)

    # asyncio's own child processes are reaped beside libxl's.
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "print('a child of our own')")
    await child.wait()


async def main():
    async with simulated_host() as host:  # a host process; this process's libxl now uses it
        async with await Context.open_asyncio() as ctx:
            await tour(ctx, host)


asyncio.run(main())
