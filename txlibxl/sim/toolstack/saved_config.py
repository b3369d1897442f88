"""
The configuration libxl saves for a domain it creates: a
``libxl_domain_config`` in libxl's JSON, in
``/var/lib/xen/userdata-d.<domid>.<uuid>.libxl-json`` (with its terminating
NUL, as ``libxl__userdata_store`` writes it).  ``xl list -l`` and
``libxl_retrieve_domain_configuration`` read it back; libxl's destroy
removes it.

:func:`saved_config` gives the configuration of a domain the simulator
creates in libxl's place (what libxl would have saved had it been asked
for that domain), and :func:`userdata_name` the file's name.
"""
from typing import Any, Dict, List

from .devices import GuestRecord
from .libxl_layout import HVM_VIDEO_MEMKB, _mac
from .specs import DomainSpec

__all__ = ["saved_config", "userdata_name"]


def userdata_name(domid: int, uuid: str) -> str:
    return "userdata-d.%d.%s.libxl-json" % (domid, uuid)


def saved_config(record: GuestRecord, spec: DomainSpec) -> Dict[str, Any]:
    """libxl's JSON for the domain of C{record}, built from C{spec}."""
    hvm = spec.type == "hvm"
    b_info: Dict[str, Any] = {
        "max_vcpus": spec.vcpus,
        "avail_vcpus": list(range(spec.vcpus)),
        "max_memkb": spec.memory_kb,
        "target_memkb": spec.memory_kb - (HVM_VIDEO_MEMKB if hvm else 0),
        "video_memkb": HVM_VIDEO_MEMKB if hvm else 0,
        "type.%s" % spec.type: {},
    }
    if spec.type == "pv":
        b_info["kernel"] = "/boot/vmlinuz-sim"
    disks: List[Dict[str, Any]] = [
        {
            "backend_domid": 0,
            "pdev_path": disk.target,
            "vdev": disk.vdev,
            "backend": "qdisk" if disk.cdrom and hvm else "phy",
            "format": disk.format,
            "removable": 1 if disk.cdrom else 0,
            "readwrite": 0 if disk.cdrom else 1,
            "is_cdrom": 1 if disk.cdrom else 0,
        }
        for disk in spec.disks
    ]
    nics = [
        {
            "backend_domid": 0,
            "devid": devid,
            "mac": vif.mac or _mac(record.uuid, devid),
            "bridge": vif.bridge,
            "nictype": "vif_ioemu" if hvm else "vif",
        }
        for devid, vif in enumerate(spec.vifs)
    ]
    return {
        "c_info": {"type": spec.type, "name": spec.name, "uuid": record.uuid},
        "b_info": b_info,
        "disks": disks,
        "nics": nics,
        "on_poweroff": "destroy",
        "on_reboot": "restart",
        "on_watchdog": "destroy",
        "on_crash": "destroy",
    }
