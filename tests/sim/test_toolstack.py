"""
The toolstack's xenstore layout: what libxl 4.17 writes when it creates a
domain, so that the real libxl finds what it reads later (see
L{txlibxl.sim.toolstack}).  Run against the real simulated Store and
Hypervisor.
"""
import os
import stat
import subprocess

from twisted.trial.unittest import TestCase

from txlibxl.sim.errors import BadRequest, Conflict, NoSuchDomain
from txlibxl.sim.hypervisor import HostInfo, Hypervisor
from txlibxl.sim.store import Store
from txlibxl.sim.toolstack import (
    HOTPLUG_SCRIPT,
    DiskSpec,
    DomainSpec,
    Toolstack,
    VifSpec,
    devices_of,
    domain_layout,
    vdev_to_devid,
)


class VdevTests(TestCase):
    def test_xvd_names_map_to_major_202(self) -> None:
        self.assertEqual(
            [vdev_to_devid(v) for v in ("xvda", "xvdb", "xvda1", "xvdp15")],
            [51712, 51728, 51713, (202 << 8) | (15 << 4) | 15],
        )

    def test_xvd_beyond_the_sixteenth_disk_uses_the_extended_scheme(self) -> None:
        self.assertEqual(vdev_to_devid("xvdq"), (1 << 28) | (16 << 8))

    def test_hd_names_map_to_the_ide_majors(self) -> None:
        self.assertEqual([vdev_to_devid(v) for v in ("hda", "hdb", "hdc", "hdd")], [768, 832, 5632, 5696])

    def test_sd_and_dNpM_names_are_accepted(self) -> None:
        self.assertEqual((vdev_to_devid("sda"), vdev_to_devid("d0p1")), (2048, 51713))

    def test_a_plain_number_is_taken_as_the_devid(self) -> None:
        self.assertEqual(vdev_to_devid("51712"), 51712)

    def test_names_libxl_rejects_are_bad_requests(self) -> None:
        for bad in ("", "xvd", "hde", "vda", "xvda0", "sdq"):
            self.assertRaises(BadRequest, vdev_to_devid, bad)


class SpecTests(TestCase):
    def test_defaults_are_the_protocols(self) -> None:
        spec = DomainSpec.from_args({"name": "web1"})
        self.assertEqual(
            (spec.type, spec.memory_kb, spec.vcpus, spec.disks, spec.vifs, spec.paused),
            ("pv", 262144, 1, (), (), False),
        )

    def test_vifs_are_a_list_of_mappings_like_disks_or_a_count(self) -> None:
        spec = DomainSpec.from_args({"name": "web1", "vifs": [{}, {"mac": "00:16:3E:AA:BB:CC", "bridge": "br1"}]})
        self.assertEqual(spec.vifs, (VifSpec(), VifSpec("00:16:3e:aa:bb:cc", "br1")))
        self.assertEqual(DomainSpec.from_args({"name": "web1", "vifs": 2}).vifs, (VifSpec(), VifSpec()))

    def test_a_disk_defaults_to_a_raw_dev_null_disk(self) -> None:
        self.assertEqual(DiskSpec.from_args({"vdev": "xvda"}), DiskSpec("xvda", False, "/dev/null", "raw"))

    def test_unknown_arguments_are_bad_requests(self) -> None:
        self.assertRaises(BadRequest, DomainSpec.from_args, {"name": "x", "colour": "red"})
        self.assertRaises(BadRequest, DomainSpec.from_args, {"name": "x", "disks": [{"vdev": "xvda", "size": 1}]})

    def test_bad_values_are_bad_requests(self) -> None:
        for args in (
            {},
            {"name": ""},
            {"name": "a/b"},
            {"name": "x", "type": "kvm"},
            {"name": "x", "memory_kb": "lots"},
            {"name": "x", "vcpus": 0},
            {"name": "x", "vifs": True},
            {"name": "x", "vifs": 65},
            {"name": "x", "vifs": {"mac": "00:16:3e:00:00:01"}},
            {"name": "x", "vifs": [{"mac": "nope"}]},
            {"name": "x", "vifs": [{"model": "e1000"}]},
            {"name": "x", "vifs": [{"mac": "00:16:3e:00:00:01"}, {"mac": "00:16:3e:00:00:01"}]},
            {"name": "x", "paused": 1},
            {"name": "x", "disks": {"vdev": "xvda"}},
            {"name": "x", "disks": [{"vdev": "xvda", "format": "iso"}]},
        ):
            self.assertRaises(BadRequest, DomainSpec.from_args, args)

    def test_two_disks_with_one_devid_are_a_bad_request(self) -> None:
        self.assertRaises(BadRequest, DomainSpec.from_args, {"name": "x", "disks": [{"vdev": "xvda"}, {"vdev": "d0p0"}]})


class _Case(TestCase):
    def setUp(self) -> None:
        self.store = Store()
        self.hv = Hypervisor(self.store, host=HostInfo(total_memory_kb=1 << 40))
        self.toolstack = Toolstack(self.store, self.hv)
        self.toolstack.setup_dom0()

    def read(self, path: str) -> str:
        return self.store.read(path).decode()

    def create(self, **args):
        args.setdefault("name", "web1")
        return self.toolstack.create(DomainSpec.from_args(args))


class Dom0Tests(_Case):
    def test_dom0_has_what_xen_init_dom0_writes(self) -> None:
        self.assertEqual(
            (self.read("/local/domain/0/name"), self.read("/local/domain/0/domid"), self.read("/local/pool/0/name")),
            ("Domain-0", "0", "Pool-0"),
        )


class DomainTreeTests(_Case):
    def test_the_domain_is_created_paused_and_introduced(self) -> None:
        record = self.create()
        self.assertTrue(self.hv.get(record.domid).paused)
        self.assertTrue(self.store.is_introduced(record.domid))

    def test_name_domid_and_vm_are_where_libxl_reads_them(self) -> None:
        record = self.create()
        dom = "/local/domain/%d" % record.domid
        self.assertEqual(self.read(dom + "/name"), "web1")
        self.assertEqual(self.read(dom + "/domid"), str(record.domid))
        self.assertEqual(self.read(dom + "/vm"), "/vm/" + record.uuid)
        self.assertEqual(self.read("/vm/%s/uuid" % record.uuid), record.uuid)
        self.assertEqual(self.read("/vm/%s/name" % record.uuid), "web1")

    def test_the_uuid_is_the_hypervisors(self) -> None:
        record = self.create()
        self.assertEqual(record.uuid, str(self.hv.get(record.domid).uuid))

    def test_the_libxl_tree_records_the_type(self) -> None:
        pv, hvm = self.create(name="a"), self.create(name="b", type="hvm")
        self.assertEqual(self.read("/libxl/%d/type" % pv.domid), "pv")
        self.assertEqual(self.read("/libxl/%d/type" % hvm.domid), "hvm")
        self.assertEqual(self.read("/libxl/%d/dm-version" % pv.domid), "qemu_xen")

    def test_the_domain_directory_is_dom0s_and_readable_by_the_guest(self) -> None:
        record = self.create()
        self.assertEqual(self.store.get_perms("/local/domain/%d" % record.domid), ["n0", "r%d" % record.domid])
        self.assertEqual(self.store.get_perms("/libxl/%d" % record.domid), ["n0"])

    def test_control_shutdown_and_the_feature_nodes_belong_to_the_guest(self) -> None:
        record = self.create()
        control = "/local/domain/%d/control/" % record.domid
        for node in ("shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "sysrq"):
            self.assertEqual(self.store.get_perms(control + node), ["n%d" % record.domid], node)
        self.assertEqual(self.read(control + "shutdown"), "")

    def test_no_device_model_or_stub_domain_is_recorded(self) -> None:
        # libxl's destroy would otherwise try to kill a QEMU that is not there.
        record = self.create(type="hvm")
        dom = "/local/domain/%d" % record.domid
        for node in ("image/device-model-pid", "image/device-model-domid", "target"):
            self.assertFalse(self.store.exists("%s/%s" % (dom, node)), node)

    def test_an_hvm_domain_gets_its_hvm_only_nodes(self) -> None:
        record = self.create(type="hvm")
        dom = "/local/domain/%d" % record.domid
        self.assertTrue(self.store.exists(dom + "/hvmloader"))
        self.assertTrue(self.store.exists(dom + "/control/feature-s3"))
        self.assertEqual(self.read("/vm/%s/image/ostype" % record.uuid), "hvm")

    def test_memory_and_vcpus_are_recorded_as_libxl_build_post_does(self) -> None:
        record = self.create(memory_kb=524288, vcpus=2)
        dom = "/local/domain/%d" % record.domid
        self.assertEqual(self.read(dom + "/memory/static-max"), "524288")
        self.assertEqual(self.read(dom + "/memory/target"), "524288")
        self.assertEqual([self.read(dom + "/cpu/%d/availability" % i) for i in (0, 1)], ["online", "online"])

    def test_every_node_gets_the_permissions_of_the_layout(self) -> None:
        # Skipped SET_PERMS (equal to the inherited ones) change nothing.
        spec = DomainSpec.from_args(
            {"name": "web1", "type": "hvm", "vifs": 2, "disks": [{"vdev": "xvda"}, {"vdev": "hdc", "cdrom": True}]}
        )
        record = self.toolstack.create(spec)
        nodes = domain_layout(record.domid, record.uuid, spec, record.devices)
        for node in nodes:
            if node.perms is not None:
                self.assertEqual(self.store.get_perms(node.path), list(node.perms), node.path)
            else:
                parent = node.path.rsplit("/", 1)[0]
                self.assertEqual(self.store.get_perms(node.path), self.store.get_perms(parent), node.path)

    def test_a_taken_name_is_a_conflict(self) -> None:
        self.create()
        self.assertRaises(Conflict, self.create)
        self.assertRaises(Conflict, self.create, name="Domain-0")

    def test_a_forgotten_domains_name_can_be_reused(self) -> None:
        record = self.create()
        self.toolstack.forget(record.domid)
        self.assertRaises(NoSuchDomain, self.toolstack.get, record.domid)
        self.create()

    def test_stale_nodes_of_a_reused_domid_are_replaced(self) -> None:
        self.store.write("/local/domain/1/leftover", b"x")
        self.store.write("/local/domain/0/backend/vbd/1/51712/state", b"6")
        record = self.create()
        self.assertEqual(record.domid, 1)
        self.assertFalse(self.store.exists("/local/domain/1/leftover"))
        self.assertFalse(self.store.exists("/local/domain/0/backend/vbd/1"))


class DeviceTreeTests(_Case):
    def setUp(self) -> None:
        super().setUp()
        self.record = self.create(disks=[{"vdev": "xvda"}, {"vdev": "hdc", "cdrom": True}], vifs=1)
        self.devices = {(d.kind, d.devid): d for d in self.record.devices}

    def test_each_disk_and_vif_and_the_console_is_a_device(self) -> None:
        self.assertEqual(sorted(self.devices), [("console", 0), ("vbd", 5632), ("vbd", 51712), ("vif", 0)])

    def test_frontends_and_backends_are_connected(self) -> None:
        for device in self.record.devices:
            if device.kind == "console":
                continue
            self.assertEqual(self.read(device.frontend + "/state"), "4", device)
            self.assertEqual(self.read(device.backend + "/state"), "4", device)
            self.assertEqual(self.read(device.backend + "/online"), "1", device)

    def test_frontend_and_backend_point_at_each_other(self) -> None:
        disk = self.devices[("vbd", 51712)]
        domid = self.record.domid
        self.assertEqual(disk.frontend, "/local/domain/%d/device/vbd/51712" % domid)
        self.assertEqual(disk.backend, "/local/domain/0/backend/vbd/%d/51712" % domid)
        self.assertEqual(self.read(disk.frontend + "/backend"), disk.backend)
        self.assertEqual(self.read(disk.backend + "/frontend"), disk.frontend)
        self.assertEqual(self.read(disk.backend + "/frontend-id"), str(domid))

    def test_the_libxl_copy_names_both_ends(self) -> None:
        disk = self.devices[("vbd", 5632)]
        self.assertEqual(disk.libxl, "/libxl/%d/device/vbd/5632" % self.record.domid)
        self.assertEqual(self.read(disk.libxl + "/frontend"), disk.frontend)
        self.assertEqual(self.read(disk.libxl + "/backend"), disk.backend)
        self.assertEqual(self.read(disk.libxl + "/dev"), "hdc")
        self.assertEqual(self.read(disk.libxl + "/params"), "/dev/null")

    def test_backends_name_the_hotplug_script(self) -> None:
        for key in (("vbd", 51712), ("vif", 0)):
            self.assertEqual(self.read(self.devices[key].backend + "/script"), HOTPLUG_SCRIPT)
        self.assertEqual(self.read(self.devices[("vif", 0)].backend + "/type"), "vif")

    def test_a_vifs_mac_and_bridge_reach_its_backend_and_frontend(self) -> None:
        record = self.create(name="nets", vifs=[{"mac": "00:16:3e:01:02:03", "bridge": "br-lan"}, {}])
        vifs = [d for d in record.devices if d.kind == "vif"]
        self.assertEqual([d.devid for d in vifs], [0, 1])
        self.assertEqual(self.read(vifs[0].backend + "/mac"), "00:16:3e:01:02:03")
        self.assertEqual(self.read(vifs[0].frontend + "/mac"), "00:16:3e:01:02:03")
        self.assertEqual(self.read(vifs[0].backend + "/bridge"), "br-lan")
        self.assertEqual(self.read(vifs[1].backend + "/bridge"), "xenbr0")
        self.assertTrue(self.read(vifs[1].backend + "/mac").startswith("00:16:3e:"))

    def test_an_hvm_guests_nics_are_emulated_too(self) -> None:
        hvm = self.create(name="h", type="hvm", vifs=1)
        [vif] = [d for d in hvm.devices if d.kind == "vif"]
        self.assertEqual(self.read(vif.backend + "/type"), "vif_ioemu")

    def test_a_cdrom_is_a_removable_read_only_cdrom(self) -> None:
        cd = self.devices[("vbd", 5632)]
        self.assertTrue(cd.cdrom)
        self.assertEqual(cd.vdev, "hdc")
        self.assertEqual(self.read(cd.backend + "/device-type"), "cdrom")
        self.assertEqual(self.read(cd.backend + "/removable"), "1")
        self.assertEqual(self.read(cd.backend + "/mode"), "r")
        self.assertEqual(self.read(cd.frontend + "/device-type"), "cdrom")

    def test_the_frontend_has_no_dev_node_as_on_real_xen(self) -> None:
        # libxl 4.17 reads <frontend>/dev for DISK_EJECT's vdev (a known
        # slip: it meant the /libxl copy), so real events carry no vdev.
        self.assertFalse(self.store.exists(self.devices[("vbd", 5632)].frontend + "/dev"))

    def test_frontends_belong_to_the_guest_and_backends_to_dom0(self) -> None:
        domid = self.record.domid
        disk = self.devices[("vbd", 51712)]
        self.assertEqual(self.store.get_perms(disk.frontend + "/state"), ["n%d" % domid, "r0"])
        self.assertEqual(self.store.get_perms(disk.backend + "/state"), ["n0", "r%d" % domid])

    def test_the_primary_console_lives_in_the_domain_directory(self) -> None:
        console = self.devices[("console", 0)]
        self.assertEqual(console.frontend, "/local/domain/%d/console" % self.record.domid)
        self.assertEqual(self.read(console.frontend + "/type"), "xenconsoled")
        self.assertEqual(self.read(console.libxl + "/backend"), console.backend)

    def test_devices_of_lists_what_create_wrote(self) -> None:
        spec = DomainSpec.from_args({"name": "web1", "disks": [{"vdev": "xvda"}, {"vdev": "hdc", "cdrom": True}], "vifs": 1})
        self.assertEqual(devices_of(self.record.domid, spec), self.record.devices)

    def test_disk_finds_a_disk_by_vdev(self) -> None:
        self.assertEqual(self.record.disk("hdc"), self.devices[("vbd", 5632)])
        self.assertRaises(BadRequest, self.record.disk, "xvdb")


class TeardownTests(_Case):
    def test_teardown_removes_every_tree_of_the_domain(self) -> None:
        before = set(self.store.paths())
        record = self.create(disks=[{"vdev": "xvda"}], vifs=1)
        self.toolstack.teardown(record)
        left = set(self.store.paths()) - before
        # Only the empty parents shared by every domain's trees remain.
        self.assertEqual(left, {"/vm", "/libxl"})

    def test_teardown_leaves_other_domains_alone(self) -> None:
        a = self.create(name="a", disks=[{"vdev": "xvda"}])
        b = self.create(name="b", disks=[{"vdev": "xvda"}])
        self.toolstack.teardown(a)
        self.assertTrue(self.store.exists("/local/domain/0/backend/vbd/%d/51712/state" % b.domid))
        self.assertTrue(self.store.exists("/local/domain/%d/name" % b.domid))

    def test_teardown_of_an_already_removed_tree_is_harmless(self) -> None:
        record = self.create(disks=[{"vdev": "xvda"}])
        self.store.rm("/local/domain/%d" % record.domid)
        self.toolstack.teardown(record)
        self.assertFalse(self.store.exists("/libxl/%d" % record.domid))


class HotplugScriptTests(TestCase):
    def test_the_script_is_executable(self) -> None:
        self.assertTrue(os.stat(HOTPLUG_SCRIPT).st_mode & stat.S_IXUSR)

    def test_the_script_succeeds_for_every_action(self) -> None:
        for action in (["add"], ["remove"], ["online", "type_if=vif"], ["offline", "type_if=vif"]):
            self.assertEqual(subprocess.run([HOTPLUG_SCRIPT] + action).returncode, 0, action)


class SavedConfigTests(TestCase):
    """The configuration saved in libxl's place, where libxl keeps it."""

    def test_a_created_domain_has_its_config_saved_where_libxl_keeps_it(self) -> None:
        import json

        directory = self.mktemp()
        os.makedirs(directory)
        store = Store()
        toolstack = Toolstack(store, Hypervisor(store, host=HostInfo(total_memory_kb=1 << 30)),
                              userdata_dir=directory)
        spec = DomainSpec.from_args({"name": "web1", "vcpus": 2, "disks": [{"vdev": "xvda"}], "vifs": 1})
        record = toolstack.create(spec)
        path = toolstack.saved_config_path(record)
        self.assertEqual(os.path.basename(path), "userdata-d.%d.%s.libxl-json" % (record.domid, record.uuid))
        with open(path) as f:
            text = f.read()
        self.assertTrue(text.endswith("\0"), "libxl stores the terminating NUL")
        saved = json.loads(text.rstrip("\0"))
        self.assertEqual((saved["c_info"]["name"], saved["c_info"]["uuid"]), ("web1", record.uuid))
        self.assertEqual(saved["b_info"]["avail_vcpus"], [0, 1])
        self.assertEqual(([d["vdev"] for d in saved["disks"]], len(saved["nics"])), (["xvda"], 1))


class HostRootTests(TestCase):
    def test_the_root_holds_libxls_directories_and_the_hosts_scripts_at_xens_paths(self) -> None:
        from txlibxl.sim.host_root import SCRIPTS, populate_root

        root = self.mktemp()
        populate_root(root)
        populate_root(root)  # idempotent
        for sub in ("var/run/xen", "var/lib/xen", "var/log/xen", "var/lock"):
            self.assertTrue(os.path.isdir(os.path.join(root, sub)), sub)
        for sub in ("etc/xen/scripts/block", "etc/xen/scripts/vif-bridge"):
            self.assertTrue(os.access(os.path.join(root, sub), os.X_OK), sub)
            self.assertEqual(os.path.realpath(os.path.join(root, sub)), os.path.realpath(SCRIPTS[sub]))
