"""Command groups for Windows workloads: `nodeboot gmsa ...` and `nodeboot windows run-as`."""

from __future__ import annotations

import json

import click

from nodeboot.cli import options as o
from nodeboot.errors import UsageError


def _cluster(kubeconfig: str | None):
    from nodeboot.cluster.client import Cluster

    return Cluster.from_kubeconfig(kubeconfig)


@click.group()
def gmsa() -> None:
    """Group Managed Service Accounts for Windows pods (windows.k8s.io GMSACredentialSpec)."""


@gmsa.command("install")
@o.kubeconfig
def gmsa_install(kubeconfig: str | None) -> None:
    """Install the GMSACredentialSpec CRD if missing and check the windows-gmsa webhook."""
    from nodeboot.cluster import gmsa as g

    cluster = _cluster(kubeconfig)
    created = g.install_crd(cluster)
    click.echo(f"CRD {g.CRD_NAME}: {'created' if created else 'already installed'}")
    hooks = g.webhook_names(cluster)
    if hooks:
        click.echo(f"windows-gmsa webhook: {', '.join(hooks)}")
    else:
        click.echo(f"warning: {g.WEBHOOK_HELP}", err=True)


@gmsa.command("apply")
@click.option("--credspec", "credspec_file", required=True, metavar="FILE",
              help="New-CredentialSpec's JSON (or a GMSACredentialSpec YAML).")
@click.option("--name", required=True, help="Name of the GMSACredentialSpec resource.")
@click.option("--service-account", "service_accounts", multiple=True, metavar="NS/SA",
              help="Service account allowed to use it (repeatable).")
@o.kubeconfig
def gmsa_apply(credspec_file: str, name: str, service_accounts: tuple[str, ...], kubeconfig: str | None) -> None:
    """Create the credential spec, a ClusterRole with verb use on it, and RoleBindings."""
    from nodeboot import app
    from nodeboot.cluster import gmsa as g
    from nodeboot.windows import credspec, identity

    app.check_flag("--name", identity.gmsa_name, name)
    accounts = [g.ServiceAccountRef.parse(s) for s in service_accounts]
    spec = credspec.load(credspec_file)
    changes = g.apply_spec(_cluster(kubeconfig), name, spec, accounts)
    for change in changes or ["nothing to change"]:
        click.echo(change)


@gmsa.command("generate")
@click.option("--host", "host", required=True, help="Domain-joined Windows host (inventory name with -i, or address).")
@click.option("--account", required=True, help="The gMSA's account name.")
@click.option("--domain", help="The gMSA's domain (default: the host's).")
@o.inventory("Inventory that names HOST (its WinRM vars are used).", dest="inventory_file")
@o.user("WinRM user (HOST form).")
@o.password_env
@o.winrm_ca
@o.insecure_skip_tls_verify
def gmsa_generate(host: str, account: str, domain: str | None, inventory_file: str | None, user: str | None,
                  password_env: str | None, winrm_ca: str | None, insecure_skip_tls_verify: bool) -> None:
    """Run New-CredentialSpec on a Windows host over WinRM and print the credential spec JSON."""
    from nodeboot.windows import generate

    click.echo(json.dumps(generate.credspec(host, account, domain, inventory_file, user, password_env, winrm_ca,
                                            insecure_skip_tls_verify), indent=2))


@click.group("windows")
def windows_group() -> None:
    """Windows workloads."""


@windows_group.command("run-as")
@click.argument("workload")
@o.user("runAsUserName, e.g. 'DOMAIN\\user' or 'NT AUTHORITY\\NETWORK SERVICE'.")
@click.option("--gmsa", help="Name of a GMSACredentialSpec for the pods.")
@click.option("-n", "--namespace", default="default", show_default=True, help="The pod's namespace.")
@o.kubeconfig
@o.dry_run("Let the API server check the patch without saving it.")
def run_as(workload: str, user: str | None, gmsa: str | None, namespace: str, kubeconfig: str | None,
           dry_run: bool) -> None:
    """Set securityContext.windowsOptions on WORKLOAD's pod template (deployment/NAME, ...)."""
    from nodeboot import app
    from nodeboot.cluster import gmsa as g
    from nodeboot.windows import identity

    if user is None and gmsa is None:
        raise UsageError("run-as needs --user, --gmsa or both")
    app.check_flag("--user", identity.run_as_user_name, user)
    app.check_flag("--gmsa", identity.gmsa_name, gmsa)
    kind, name = g.parse_workload(workload)
    cluster = _cluster(kubeconfig)
    if gmsa is not None and not g.spec_exists(cluster, gmsa):
        click.echo(f"warning: GMSACredentialSpec {gmsa} does not exist (yet): pods will fail admission by the "
                   "windows-gmsa webhook until it does", err=True)
    g.patch_run_as(cluster, kind, name, namespace, user, gmsa, dry_run)
    what = ", ".join(f"{k}={v}" for k, v in (("runAsUserName", user), ("gmsaCredentialSpecName", gmsa)) if v)
    click.echo(f"{kind} {namespace}/{name}: {what}" + (" (dry run)" if dry_run else ""))


COMMANDS = (gmsa, windows_group)
