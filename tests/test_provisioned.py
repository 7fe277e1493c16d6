"""Provisioned concurrency: environments of a version or alias started and initialized ahead,
kept past the idle TTL, replaced when they die, used first (no cold start), and provisioned
again after a restart."""
import base64
import json
import os
import signal
import time

from conftest import create_py_function, expect_error, is_fork_spare, wait_for

PROBE = """
import os, time
INIT_AT = time.time()
def handler(event, context):
    return {"init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"], "init_at": INIT_AT, "pid": os.getpid(),
            "version": context.function_version}
"""


def wait_status(lam, name, qualifier, status="READY", timeout=30):
    def current():
        c = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        return c if c["Status"] == status else None

    return wait_for(current, timeout, f"provisioned concurrency of {name}:{qualifier} to become {status}", step=0.1)


def children(pid):
    """The live (not zombie) runtimes of server `pid`: its child processes, the children of
    its Python fork servers (runtime/zygote.py) in place of the fork servers themselves,
    without their waiting pre-forked spares."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(entry)] = int(fields[1])

    def is_zygote(p):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                return b"/runtime/zygote.py" in f.read()
        except OSError:
            return False

    direct = {p for p, pp in parent.items() if pp == pid}
    zygotes = {p for p in direct if is_zygote(p)}
    return (direct - zygotes) | {p for p, pp in parent.items() if pp in zygotes and not is_fork_spare(p)}


def test_provisioned_concurrency(fresh_server):
    srv = fresh_server("--lambda-container-ttl", "1", "--lambda-max-containers", "4")
    lam = srv.client("lambda")
    name = create_py_function(lam, PROBE)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    expect_error("InvalidParameterValueException", 400, lam.put_provisioned_concurrency_config,
                 FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1)
    expect_error("InvalidParameterValueException", 400, lam.put_provisioned_concurrency_config,
                 FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=5)  # over max containers
    expect_error("ProvisionedConcurrencyConfigNotFoundException", 404, lam.get_provisioned_concurrency_config,
                 FunctionName=name, Qualifier="live")

    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202 and put["Status"] == "IN_PROGRESS"
    ready = wait_status(lam, name, "live")
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2 == ready["AvailableProvisionedConcurrentExecutions"]
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["live"]
    assert srv.health()["environments"]["idle"] == 2

    # Already initialized: no cold start, and the runtime knows it is provisioned.
    before = time.time()
    r = lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}", LogType="Tail")
    out = json.loads(r["Payload"].read())
    assert out["init_type"] == "provisioned-concurrency" and out["version"] == "1"
    assert out["init_at"] < before
    assert "Init Duration" not in base64.b64decode(r["LogResult"]).decode()

    # Kept past the 1 s idle TTL, which takes an on-demand environment away.
    other = create_py_function(lam, PROBE)
    probe = json.loads(lam.invoke(FunctionName=other, Payload=b"{}")["Payload"].read())
    assert probe["init_type"] == "on-demand"
    assert probe["pid"] in children(srv.proc.pid) and out["pid"] in children(srv.proc.pid)
    # The on-demand environment goes after its 1 s idle TTL; the provisioned ones, idle for
    # longer already, stay.
    wait_for(lambda: probe["pid"] not in children(srv.proc.pid), 15, "the idle on-demand environment to stop")
    assert out["pid"] in children(srv.proc.pid)
    assert srv.health()["environments"]["live"] == 2

    # A provisioned runtime that dies is replaced by another provisioned one (by the pool,
    # within a reaper tick; an invoke racing the kill itself may see Runtime.ExitError).
    envs_before = children(srv.proc.pid)
    assert len(envs_before) == 2, envs_before
    os.kill(out["pid"], signal.SIGKILL)

    def replaced():
        now = children(srv.proc.pid)
        h = srv.health()["environments"]
        return out["pid"] not in now and len(now - envs_before) == 1 and h["live"] == 2 and h["idle"] == 2

    wait_for(replaced, 15, "the killed provisioned environment to be replaced and initialized")
    pids = set()
    for _ in range(4):
        o = json.loads(lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")["Payload"].read())
        assert o.get("init_type") == "provisioned-concurrency", o
        pids.add(o["pid"])
    assert out["pid"] not in pids
    assert srv.health()["environments"]["live"] == 2

    # Provisioned again after a restart (kill -9 included).
    srv.kill()
    srv.start()
    lam = srv.client("lambda")
    wait_status(lam, name, "live")
    wait_for(lambda: srv.health()["environments"]["live"] >= 2, 15, "two provisioned environments after the restart")
    assert srv.health()["environments"]["live"] == 2

    # Deleted: gone from the record; its environments age out like any other.
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    expect_error("ProvisionedConcurrencyConfigNotFoundException", 404, lam.get_provisioned_concurrency_config,
                 FunctionName=name, Qualifier="live")
    wait_for(lambda: srv.health()["environments"]["live"] == 0, 10, "the unprovisioned environments to age out")


def test_deleting_a_qualifier_drops_its_settings(lam):
    """Deleting an alias or a version drops what was configured for it: provisioned
    concurrency, its policy, its function URL and its async-invoke settings."""
    name = create_py_function(lam, PROBE)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="gone", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="gone", ProvisionedConcurrentExecutions=1)
    wait_status(lam, name, "gone")
    lam.add_permission(FunctionName=name, Qualifier="gone", StatementId="s", Action="lambda:InvokeFunction", Principal="*")
    lam.create_function_url_config(FunctionName=name, Qualifier="gone", AuthType="NONE")
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="gone", MaximumRetryAttempts=0)
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="1", MaximumRetryAttempts=1)
    lam.delete_alias(FunctionName=name, Name="gone")
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in
            lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]] == ["1"]
    lam.delete_function(FunctionName=name, Qualifier="1")
    assert lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"] == []


def test_alias_with_routing_provisions_its_main_version(lam):
    """An alias's RoutingConfig weighs invocations, not provisioning: the provisioned environment
    runs the alias's main version even when the additional version takes every invocation."""
    name = create_py_function(lam, PROBE)
    lam.publish_version(FunctionName=name)
    lam.update_function_configuration(FunctionName=name, Description="two")
    wait_for(lambda: lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"] == "Successful", 10,
             "the configuration update to settle")
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.create_alias(FunctionName=name, Name="split", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="split", ProvisionedConcurrentExecutions=1)
    wait_status(lam, name, "split")
    # Weight 1.0: every invocation of the alias runs version 2, on demand.
    via_alias = json.loads(lam.invoke(FunctionName=name, Qualifier="split", Payload=b"{}")["Payload"].read())
    assert via_alias["version"] == "2" and via_alias["init_type"] == "on-demand", via_alias
    # The provisioned environment is version 1's.
    main = json.loads(lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")["Payload"].read())
    assert main["version"] == "1" and main["init_type"] == "provisioned-concurrency", main
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="split")
