"""
The tutorial's tour: a domain's life on a simulated host, through txlibxl.

Run it with ``.venv/bin/python docs/examples/tour.py``.
"""
# The tutorial's code, in the page's order: the imports, main, tour, and
# the call that runs main on the reactor (docs/tutorial.rst).
from twisted.internet import defer, task

from txlibxl.context import Context, OperationCancelled
from txlibxl.testing import start_simulated_host, use_simulated_host


async def tour(ctx, host):
    dom = await host.control.create_domain(
        name="web1", disks=[{"vdev": "xvda"}, {"vdev": "hdc", "cdrom": True}]
    )
    domid = dom["domid"]
    watch = ctx.watch_domain(domid)

    # A CD-ROM's ejects.
    ejects = ctx.watch_disk_eject(domid, "hdc")
    await host.control.eject(domid, "hdc")  # QEMU ejects the medium
    print(await ejects.next_event())
    ejects.cancel()

    # Ask the guest to shut down: the Deferred fires once the guest has
    # acknowledged; the watch then reports the shutdown itself.
    await ctx.shutdown(domid)
    print(await watch.when_shutdown())

    await ctx.destroy(domid)
    print(await watch.when_dead())

    # Every event of a watch, in order, each once; the loop ends with the death.
    other = (await host.control.create_domain(name="web2"))["domid"]
    events = ctx.watch_domain(other)
    await host.control.shutdown(other, "crash")  # the guest crashes
    # Wait for libxl to have seen the crash: a domain destroyed before
    # libxl looks at it again reports only its death.
    await events.when_shutdown()
    await host.control.destroy([other])  # another toolstack destroys it
    async for event in events:
        print(event)

    # Cancelling an operation aborts it in libxl.
    stubborn = (await host.control.create_domain(name="web3"))["domid"]
    await host.control.fault("guest_ignore_shutdown", domid=stubborn)
    d = ctx.shutdown(stubborn)
    d.cancel()
    try:
        await d
    except OperationCancelled as e:
        print("cancelled:", e)


async def main(reactor):
    host = await start_simulated_host(reactor)
    undo = use_simulated_host(host)  # before the first Context
    ctx = Context(reactor)
    try:
        await tour(ctx, host)
    finally:
        await ctx.close()
        undo()
        await host.stop()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
