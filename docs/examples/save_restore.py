"""
Moving domains: save a guest into a file, restore it, checkpoint it, on a
simulated host, through txlibxl.

Run it with ``.venv/bin/python docs/examples/save_restore.py``.
"""
import os
import shutil
import tempfile

from twisted.internet import defer, task

from txlibxl.context import Context
from txlibxl.testing import start_simulated_host, use_simulated_host


def guest_config(name, kernel, disk):
    return {
        "c_info": {"type": "pv", "name": name},
        "b_info": {"max_vcpus": 1, "max_memkb": 65536, "target_memkb": 65536, "kernel": kernel, "type.pv": {}},
        "disks": [{"pdev_path": disk, "vdev": "xvda", "format": "raw", "readwrite": 1}],
        "nics": [],
    }


async def save_and_restore(ctx, files, directory):
    config = guest_config("web1", files("vmlinuz", b"\x7fELF simulated kernel"), files("web1.img", size=1 << 20))
    domid = await ctx.create(config)
    await ctx.unpause(domid)

    # The configuration to restore with is the running domain's (libxl's
    # own, with the UUID it was given).
    saved_config = await ctx.domain_config(domid)
    path = os.path.join(directory, "web1.save")
    await ctx.save(domid, path)  # as `xl save`: the domain is destroyed once saved
    print("saved:", [d.name for d in ctx.list_domains()], os.stat(path).st_mode & 0o777 == 0o600)

    restored = await ctx.restore(saved_config, path)  # paused, as after create
    await ctx.unpause(restored)
    info = ctx.domain_info(restored)
    print("restored:", info.uuid == saved_config["c_info"]["uuid"], info.paused)

    # A checkpoint: saved, and running on.
    await ctx.save(restored, os.path.join(directory, "web1.checkpoint"), live=True, then="resume")
    print("checkpointed:", [d.name for d in ctx.list_domains()], ctx.domain_info(restored).shutdown)
    await ctx.destroy(restored)


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
        await save_and_restore(ctx, files, directory)
    finally:
        await ctx.close()
        undo()
        await host.stop()
        shutil.rmtree(directory)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
