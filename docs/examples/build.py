"""
Building domains: a guest's life from its configuration, on a simulated
host, through txlibxl.

Run it with ``.venv/bin/python docs/examples/build.py``.
"""
import os
import shutil
import tempfile

from twisted.internet import defer, task

from txlibxl import InvalidConfiguration, OperationCancelled
from txlibxl.context import Context
from txlibxl.testing import start_simulated_host, use_simulated_host


def guest_config(name, kernel, disk):
    # libxl's own JSON shape: what `xl -N create guest.cfg` prints.
    return {
        "c_info": {"type": "pv", "name": name},
        "b_info": {
            "max_vcpus": 2,
            "max_memkb": 262144,
            "target_memkb": 262144,
            "kernel": kernel,
            "type.pv": {},
        },
        "disks": [{"pdev_path": disk, "vdev": "xvda", "format": "raw", "readwrite": 1}],
        "nics": [{"bridge": "xenbr0"}],
    }


async def build(ctx, files):
    kernel = files("vmlinuz", b"\x7fELF simulated kernel")
    config = guest_config("web1", kernel, files("web1.img", size=1 << 24))

    # Create: the console is reported once, before the domid.
    domid = await ctx.create(config, on_console=lambda event: print("console:", event))
    print("created:", domid)
    await ctx.unpause(domid)  # libxl leaves a new domain paused, as xl does before unpausing it
    kept = await ctx.domain_config(domid)
    print("uuid given:", "uuid" not in config["c_info"] and kept["c_info"]["uuid"] == ctx.domain_info(domid).uuid)

    # Devices, as xl disk specs or libxl mappings.
    disk = await ctx.add_disk(domid, f"format=raw,vdev=xvdb,access=rw,target={files('data.img', size=1 << 20)}")
    nic = await ctx.add_nic(domid, {"bridge": "xenbr0"})
    kept = await ctx.domain_config(domid)
    print("disks:", [d["vdev"] for d in kept["disks"]], "nics:", [n["devid"] for n in kept["nics"]])
    await ctx.remove_disk(domid, disk["vdev"])
    await ctx.remove_nic(domid, nic["mac"])

    # Memory, vCPUs, name, console.
    ctx.set_memory_target(domid, 131072)
    await ctx.set_vcpus(domid, 1)
    ctx.rename(domid, "db1")
    kept = await ctx.domain_config(domid)
    print("changed:", kept["c_info"]["name"], ctx.memory_target(domid), ctx.console_tty(domid))

    # A configuration libxl would silently misread is refused, naming the key.
    bad = guest_config("typo", kernel, files("typo.img", size=1 << 20))
    bad["b_info"]["max_vcpu"] = 4
    try:
        await ctx.create(bad)
    except InvalidConfiguration as e:
        print("refused:", e.ignored)

    # Cancelling a create aborts it; the half-built domain is destroyed.
    half = ctx.create(guest_config("half", kernel, files("half.img", size=1 << 20)))
    half.cancel()
    try:
        await half
    except OperationCancelled as e:
        await e.settled
        print("cancelled:", [d.name for d in ctx.list_domains()])

    await ctx.destroy(domid)
    print("destroyed:", [d.name for d in ctx.list_domains()])


async def main(reactor):
    host = await start_simulated_host(reactor)
    undo = use_simulated_host(host)  # before the first Context
    ctx = Context(reactor)
    directory = tempfile.mkdtemp()

    def files(name, content=b"", size=0):
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(content)
            f.truncate(size or len(content))
        return path

    try:
        await build(ctx, files)
    finally:
        await ctx.close()
        undo()
        await host.stop()
        shutil.rmtree(directory)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
