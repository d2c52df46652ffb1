"""`nodeboot-lab`: the local lab's command line (root; see README)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nodeboot.errors import NodebootError

STATE_DIR = click.option("--state-dir", type=click.Path(file_okay=False), help="Where the lab keeps its state.")
K8S_VERSION = click.option("--k8s-version", default=None, help="Release to build (default v1.37.2).")


def _log(message: str) -> None:
    click.echo(message, err=True)


def _lab(state_dir: str | None):
    from nodeboot_lab.lab import Lab

    return Lab(Path(state_dir) if state_dir else None, log=_log)


@click.group()
def cli() -> None:
    """The local lab: a real control plane and sandboxed hosts (root; see README)."""


@cli.command("up")
@click.option("--linux", default=3, show_default=True, type=click.IntRange(0, 79), help="Linux hosts (namespaces).")
@click.option("--windows", default=1, show_default=True, type=click.IntRange(0, 20), help="Windows hosts (modelled).")
@K8S_VERSION
@click.option("--bin-dir", type=click.Path(file_okay=False), help="Use ready-made binaries instead of building.")
@click.option("--node-services", is_flag=True,
              help="Also run the artifact mirror and the OCI registry a real node uses.")
@click.option("--vm-nodes", default=0, show_default=True, type=click.IntRange(0, 20),
              help="Bare Debian VMs (qemu, real kernel) on the lab bridge, for nodeboot to install and join.")
@click.option("--dual-stack", is_flag=True,
              help="IPv4 and IPv6 Service and Pod ranges, and an IPv6 ULA address on each VM node.")
@STATE_DIR
def lab_up(linux: int, windows: int, k8s_version: str | None, bin_dir: str | None, node_services: bool,
           vm_nodes: int, dual_stack: bool, state_dir: str | None) -> None:
    """Start the lab (a previous lab in the same state dir is removed first)."""
    from nodeboot_lab import build

    the_lab = _lab(state_dir)
    the_lab.up(linux, windows, k8s_version or build.DEFAULT_VERSION, Path(bin_dir) if bin_dir else None,
               node_services=node_services, vm_nodes=vm_nodes, dual_stack=dual_stack)
    click.echo(json.dumps(the_lab.env(), indent=2))


@cli.command("build")
@K8S_VERSION
def lab_build(k8s_version: str | None) -> None:
    """Build (once per machine) the Kubernetes binaries, the real node's artifacts and images, and the VM
    node's disk image."""
    from nodeboot_lab import build, node_image, node_mirror

    version = k8s_version or build.DEFAULT_VERSION
    path = build.ensure_binaries(version, log=_log)
    node = node_mirror.ensure_node_cache(version, path, log=_log)
    image = node_image.ensure_image()
    click.echo(str(path))
    click.echo(str(node.root))
    click.echo(str(image.dir))


@cli.command("down")
@STATE_DIR
def lab_down(state_dir: str | None) -> None:
    """Stop the lab and remove every process, namespace, mount and bridge it made."""
    removed = _lab(state_dir).down()
    if not removed:
        _log("lab: nothing to remove")


@cli.command("status")
@STATE_DIR
def lab_status(state_dir: str | None) -> None:
    """What the lab runs: hosts, addresses, processes."""
    click.echo(json.dumps(_lab(state_dir).status(), indent=2))


@cli.command("env")
@STATE_DIR
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of shell exports.")
def lab_env(state_dir: str | None, as_json: bool) -> None:
    """Paths of admin.conf, inventory.yml, known_hosts, the SSH key; the API endpoint."""
    env = _lab(state_dir).env()
    if as_json:
        click.echo(json.dumps(env, indent=2))
        return
    click.echo(f"export KUBECONFIG={env['kubeconfig']}")
    click.echo(f"export NODEBOOT_LAB_INVENTORY={env['inventory']}")
    click.echo(f'export {env["winrm_password_env"]}="$(cat {env["winrm_password_file"]})"')


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.ClickException as exc:
        click.echo(f"nodeboot-lab: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(2)
    except NodebootError as exc:
        click.echo(f"nodeboot-lab: {exc}", err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
